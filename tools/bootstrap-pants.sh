#!/usr/bin/env bash
# Installs Pants 2.17.1 on a Debian 12 machine that reaches only PyPI and Debian's archive
# (no GitHub, so no scie-pants launcher). Called by ./pants when no launcher is installed.
#
#   * Python 3.9 for Pants itself, from Debian 11's .debs unpacked into a private prefix
#     (Pants 2.17.1 on PyPI is a cp39 wheel). Our own code runs on Python 3.11.
#   * pantsbuild.pants==2.17.1 into a py3.9 venv.
#   * The tools Pants would fetch from GitHub, built or taken locally:
#     [pex-cli] from PyPI's pex, [protoc] and [grpc-python-plugin] from Debian.
#   * <repo>/.pants.rc (gitignored): file:// url_templates with their sha256 and size.
#
# Idempotent. Everything lands in $FLOTILLA_PANTS_HOME (tools/build-env.sh: default
# ~/.cache/flotilla-pants). PANTS_PY39_DEBS=DIR uses pre-fetched copies of the nine python3.9 .debs
# instead of apt. Every pip and pex here runs with no pip configuration file and the system CA
# bundle (hermetic_pip_env), so a machine's pip.conf or PIP_* variables cannot change what is installed.
set -euo pipefail

PANTS_VERSION=2.17.1
PEX_VERSION=2.1.137 # the [pex-cli] default of Pants 2.17.1
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO_ROOT/tools/build-env.sh"
HOME_DIR="$FLOTILLA_PANTS_HOME"
PY39_PREFIX="$HOME_DIR/python3.9"
PY39="$PY39_PREFIX/usr/bin/python3.9"
VENV="$HOME_DIR/pants-$PANTS_VERSION"
TOOLS="$HOME_DIR/tools"
HOST_PY="${HOST_PYTHON:-python3}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
PY39_DEBS=(python3.9-minimal libpython3.9-minimal libpython3.9-stdlib python3.9
  python3-distutils python3-lib2to3 libssl1.1 libffi7 libmpdec3)

log() { echo "[bootstrap-pants $(date +%T)] $*" >&2; }
mkdir -p "$HOME_DIR" "$TOOLS"

install_debian_packages() {
  local need=() p
  for p in protobuf-compiler protobuf-compiler-grpc libprotobuf-dev patchelf; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  ((${#need[@]})) || return 0
  log "apt-get install ${need[*]}"
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${need[@]}" >/dev/null
}

# Writes a sources.list for bullseye from the mirror(s) apt already uses for bookworm, so no
# archive host is written in this repository.
bullseye_sources() {
  apt-cache policy | awk '$1 ~ /^[0-9]+$/ && $2 ~ /^https?:/ && $3 ~ /^bookworm(-security)?\/main$/ {
      suite=$3; sub(/\/main$/, "", suite); sub(/^bookworm/, "bullseye", suite);
      print "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] " $2 " " suite " main" }' |
    sort -u
}

fetch_python39_debs() {
  local apt="$1"
  if compgen -G "${PANTS_PY39_DEBS:-/nonexistent}/*.deb" >/dev/null; then
    log "using .debs from $PANTS_PY39_DEBS"
    cp "$PANTS_PY39_DEBS"/*.deb "$apt/debs/"
    return
  fi
  bullseye_sources >"$apt/sources.list"
  if [ ! -s "$apt/sources.list" ]; then
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
    bullseye_sources >"$apt/sources.list"
  fi
  [ -s "$apt/sources.list" ] || { log "cannot derive the Debian mirror from apt-cache policy"; exit 1; }
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/parts.d"
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
    -o "Dir::State::status=$apt/status" -o "Dir::Etc::Preferences=$apt/prefs"
    -o "Dir::Etc::PreferencesParts=$apt/prefs.d" -o "APT::Sandbox::User=root")
  touch "$apt/status"
  apt-get "${opts[@]}" update -qq
  (cd "$apt/debs" && apt-get "${opts[@]}" download -qq "${PY39_DEBS[@]}")
}

install_python39() {
  "$PY39" -c 'import ssl, ctypes, decimal, hashlib, sqlite3' 2>/dev/null && return 0
  log "installing python3.9 from Debian 11 packages into $PY39_PREFIX"
  local apt="$HOME_DIR/apt-bullseye" deb m
  rm -rf "$apt" "$PY39_PREFIX"
  mkdir -p "$apt"/{lists/partial,cache/archives/partial,debs,prefs.d,parts.d} "$PY39_PREFIX"
  fetch_python39_debs "$apt"
  for deb in "$apt"/debs/*.deb; do dpkg -x "$deb" "$PY39_PREFIX"; done
  # The extension modules must find the bundled bullseye-only libraries.
  for m in _ssl _hashlib _ctypes _decimal; do
    patchelf --force-rpath --set-rpath '$ORIGIN/../../x86_64-linux-gnu' \
      "$PY39_PREFIX/usr/lib/python3.9/lib-dynload/$m.cpython-39-x86_64-linux-gnu.so"
  done
  patchelf --force-rpath --set-rpath '$ORIGIN' "$PY39_PREFIX/usr/lib/x86_64-linux-gnu/libssl.so.1.1"
  "$PY39" -c 'import ssl, ctypes, decimal, hashlib, sqlite3' >&2
  rm -rf "$apt"
}

install_pants() {
  local have
  have="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("pantsbuild.pants"))' 2>/dev/null || true)"
  [ "$have" = "$PANTS_VERSION" ] && return 0
  log "installing pantsbuild.pants==$PANTS_VERSION into $VENV"
  rm -rf "$VENV"
  # Debian strips ensurepip: make the venv without pip and let the host's pip install one.
  "$PY39" -m venv --without-pip "$VENV"
  hermetic_pip_env "$HOST_PY" -m pip --python "$VENV/bin/python" install -q --disable-pip-version-check pip
  hermetic_pip_env "$VENV/bin/python" -m pip install -q --disable-pip-version-check "pantsbuild.pants==$PANTS_VERSION"
  [ -x "$VENV/bin/pants" ] || { log "pip install of pantsbuild.pants failed"; exit 1; }
}

build_local_tools() {
  PEX_PEX="$TOOLS/pex-v$PEX_VERSION"
  if [ ! -s "$PEX_PEX" ]; then
    log "building $PEX_PEX"
    hermetic_pip_env "$VENV/bin/pex" "pex==$PEX_VERSION" -c pex -o "$PEX_PEX.tmp" --disable-cache \
      ${FLOTILLA_CA_BUNDLE:+--cert "$FLOTILLA_CA_BUNDLE"}
    mv "$PEX_PEX.tmp" "$PEX_PEX"
  fi
  PROTOC_VERSION="$(protoc --version | awk '{print $2}')"
  PROTOC_TGZ="$TOOLS/protoc-$PROTOC_VERSION.tar.gz"
  if [ ! -s "$PROTOC_TGZ" ]; then
    log "packing $PROTOC_TGZ"
    local stage
    stage="$(mktemp -d)"
    mkdir -p "$stage/bin" "$stage/include"
    cp "$(command -v protoc)" "$stage/bin/protoc"
    (cd /usr/include && find google/protobuf -name '*.proto' -exec cp --parents {} "$stage/include/" \;)
    (cd "$stage" && tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - bin include |
      gzip -n >"$PROTOC_TGZ")
    rm -rf "$stage"
  fi
  GRPC_VERSION="$(dpkg-query -W -f='${Version}' protobuf-compiler-grpc | sed 's/-.*//')"
  GRPC_PLUGIN="$TOOLS/grpc_python_plugin-$GRPC_VERSION"
  [ -s "$GRPC_PLUGIN" ] || install -m 0755 "$(command -v grpc_python_plugin)" "$GRPC_PLUGIN"
}

write_pants_rc() {
  kv() { echo "$(sha256sum "$1" | cut -d' ' -f1)|$(stat -c %s "$1")"; }
  cat >"$REPO_ROOT/.pants.rc" <<EOF
# Written by tools/bootstrap-pants.sh: machine specific, never committed.
[pex-cli]
version = "v$PEX_VERSION"
url_template = "file://$TOOLS/pex-{version}"
known_versions = ["v$PEX_VERSION|linux_x86_64|$(kv "$PEX_PEX")"]

[protoc]
version = "$PROTOC_VERSION"
url_template = "file://$TOOLS/protoc-{version}.tar.gz"
known_versions = ["$PROTOC_VERSION|linux_x86_64|$(kv "$PROTOC_TGZ")"]

[grpc-python-plugin]
version = "$GRPC_VERSION"
url_template = "file://$TOOLS/grpc_python_plugin-{version}"
known_versions = ["$GRPC_VERSION|linux_x86_64|$(kv "$GRPC_PLUGIN")"]
EOF
}

install_debian_packages
install_python39
install_pants
build_local_tools
write_pants_rc
log "ready: $VENV/bin/pants"
