"""Pip the way Flotilla runs it: no pip configuration file, and the system's CA bundle, explicitly.

pip reads configuration files (site-wide ones such as /etc/xdg/pip/pip.conf even in `--isolated`
mode, the user's, and the one `$PIP_CONFIG_FILE` names). One can add indexes, find-links or a
`constraint`, and then pip sees more than we asked for, or crashes (pip 23.1's `pip download` of
a locked URL fails with a bare AssertionError when a configured constraint names a package it
was not asked for). `PIP_CONFIG_FILE=/dev/null` is pip's documented way to read none of them, and
the `PIP_*` variables, which set the same options, are dropped too. The CA bundle such a file may
have named is then given as `PIP_CERT`: the system's bundle, which a TLS-inspecting proxy's
certificate is installed into. (Proxies still come from `HTTPS_PROXY`.)

`cached_venv` builds an isolated venv from a fully pinned requirements file (a package the repo's
own resolve cannot hold, such as FastAgency), once, under ~/.cache/flotilla.

Standard library only: the build's own tools (tools/fetch_artifacts.py) use it before any
dependency is installed.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

WELL_KNOWN_CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/cert.pem",  # Alpine, macOS
)


def system_ca_bundle(environ: Mapping[str, str] | None = None) -> str | None:
    """`$SSL_CERT_FILE`, OpenSSL's default CA file, or a well-known system path: the first that exists."""
    env = os.environ if environ is None else environ
    defaults = ssl.get_default_verify_paths()
    for candidate in (env.get("SSL_CERT_FILE"), defaults.cafile, defaults.openssl_cafile, *WELL_KNOWN_CA_BUNDLES):
        if candidate and os.path.isfile(candidate):
            return os.path.realpath(candidate)
    return None


def pip_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`environ` (default: this process's) for a pip subprocess: no pip configuration file and no
    `PIP_*` variable, the system CA bundle."""
    source = os.environ if environ is None else environ
    env = {name: value for name, value in source.items() if not name.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    bundle = system_ca_bundle(env)
    if bundle:
        env["PIP_CERT"] = bundle
    return env


def cached_venv(requirements: Path, name: str, *, timeout_s: float = 900) -> Path:
    """The python of a venv with `requirements` installed by this interpreter's base python,
    built once under ~/.cache/flotilla/ in a directory keyed by the file's hash (editing it
    rebuilds), under a file lock so parallel processes share one build. Raises if pip fails."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    cache = Path.home() / ".cache" / "flotilla"
    cache.mkdir(parents=True, exist_ok=True)
    venv = cache / f"{name}-venv-{digest}"
    python = venv / "bin" / "python"
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))  # the interpreter, not this venv
    stamp = f"{base}\n{requirements.read_text()}"
    with open(cache / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        complete = venv / ".complete"
        if not (python.exists() and complete.exists() and complete.read_text() == stamp):
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=120)
            install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            done = subprocess.run(
                [*install, "-r", str(requirements)],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                env=pip_environment(),
            )
            if done.returncode != 0:
                raise RuntimeError(f"installing {requirements} failed:\n{done.stdout}\n{done.stderr}")
            complete.write_text(stamp)
    return python
