"""Pip the way Flotilla runs it: no pip configuration file, and the system's CA bundle, explicitly.

pip reads configuration files (site-wide ones such as /etc/xdg/pip/pip.conf even in `--isolated`
mode, the user's, and the one `$PIP_CONFIG_FILE` names). One can add indexes, find-links or a
`constraint`, and then pip sees more than we asked for, or crashes (pip 23.1's `pip download` of
a locked URL fails with a bare AssertionError when a configured constraint names a package it
was not asked for). `PIP_CONFIG_FILE=/dev/null` is pip's documented way to read none of them, and
the `PIP_*` variables, which set the same options, are dropped too. The CA bundle such a file may
have named is then given as `PIP_CERT`: the system's bundle, which a TLS-inspecting proxy's
certificate is installed into. (Proxies still come from `HTTPS_PROXY`.)

Standard library only: the build's own tools (tools/fetch_artifacts.py) use it before any
dependency is installed.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping

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
