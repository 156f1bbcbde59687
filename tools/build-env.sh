# Sourced by ./pants, tools/bootstrap-pants.sh and 3rdparty/python/lockfiles.sh: where the build
# keeps what it installs, and the CA bundle its downloads trust. One place for both.
#
#   FLOTILLA_PANTS_HOME  Pants 2.17.1, its Python 3.9, local tools and fetched artifacts
#                        (default: $PANTS_OFFLINE_HOME, else ~/.cache/flotilla-pants)
#   FLOTILLA_CA_BUNDLE   the system CA bundle ($SSL_CERT_FILE, OpenSSL's default, or a well-known
#                        path; see libs/flotilla/hermetic_pip.py), empty when none is found
_flotilla_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${FLOTILLA_PANTS_HOME:=${PANTS_OFFLINE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/flotilla-pants}}"
if [ -z "${FLOTILLA_CA_BUNDLE+set}" ]; then
  FLOTILLA_CA_BUNDLE="$(python3 "$_flotilla_root/tools/fetch_artifacts.py" --print-ca-bundle 2>/dev/null || true)"
fi
export FLOTILLA_PANTS_HOME FLOTILLA_CA_BUNDLE

# Runs pip (or pex) as the build does: no pip configuration file at all (site-wide, user or
# $PIP_CONFIG_FILE) and no PIP_* variable, the system CA bundle given explicitly.
hermetic_pip_env() {
  local unset=() name
  for name in $(compgen -e); do [[ $name == PIP_* ]] && unset+=(-u "$name"); done
  env "${unset[@]}" PIP_CONFIG_FILE=/dev/null ${FLOTILLA_CA_BUNDLE:+PIP_CERT="$FLOTILLA_CA_BUNDLE"} "$@"
}
