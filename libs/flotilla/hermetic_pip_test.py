"""pip under `pip_environment()` reads no configuration file and no PIP_* variable, even where a
hostile environment names them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flotilla.hermetic_pip import cached_venv, pip_environment, system_ca_bundle


def _python_with_pip() -> str:
    for python in (sys.executable, getattr(sys, "_base_executable", "")):
        if python and subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode == 0:
            return python
    pytest.fail("no interpreter with pip to test against")


def test_pip_sees_no_configuration_file_and_gets_the_system_ca_bundle(tmp_path: Path) -> None:
    hostile = tmp_path / "pip.conf"
    (tmp_path / "constraints.txt").write_text("not-a-package<1\n")
    hostile.write_text(
        "[global]\n"
        f"find-links = {tmp_path / 'empty'}\n"
        f"extra-index-url = file://{tmp_path / 'empty-index'}\n"
        f"constraint = {tmp_path / 'constraints.txt'}\n"
    )
    python = _python_with_pip()
    environ = {**os.environ, "PIP_CONFIG_FILE": str(hostile), "PIP_FIND_LINKS": str(tmp_path / "elsewhere")}

    seen = subprocess.run([python, "-m", "pip", "config", "list"], env=environ, capture_output=True, text=True)
    assert f"constraint='{tmp_path / 'constraints.txt'}'" in seen.stdout, "without it, pip reads the hostile file"

    env = pip_environment(environ)
    assert env["PIP_CONFIG_FILE"] == os.devnull and "PIP_FIND_LINKS" not in env
    assert env["PIP_CERT"] == system_ca_bundle(environ) and Path(env["PIP_CERT"]).is_file()
    quiet = subprocess.run([python, "-m", "pip", "config", "list"], env=env, capture_output=True, text=True)
    assert quiet.returncode == 0 and "constraint" not in quiet.stdout and "find-links" not in quiet.stdout


def test_the_ca_bundle_follows_ssl_cert_file(tmp_path: Path) -> None:
    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert system_ca_bundle({"SSL_CERT_FILE": str(bundle)}) == str(bundle)
    assert system_ca_bundle({"SSL_CERT_FILE": str(tmp_path / "missing.pem")}) != str(tmp_path / "missing.pem")


def test_cached_venv_is_built_once_per_requirements_file_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# nothing to install\n")
    python = cached_venv(requirements, "probe")
    assert python.is_file() and python.is_relative_to(tmp_path / "home" / ".cache" / "flotilla")
    marker = python.parent.parent / "marker"
    marker.write_text("built once")
    assert cached_venv(requirements, "probe") == python and marker.exists(), "a warm call must reuse the venv"

    requirements.write_text("# edited: another venv\n")
    other = cached_venv(requirements, "probe")
    assert other != python and other.is_file()

    requirements.write_text("not-a-package-that-exists-anywhere==0\n--no-index\n")
    with pytest.raises(RuntimeError, match="installing .* failed"):
        cached_venv(requirements, "probe")
