# Sourced by the scripts that need tools from Debian: install_missing NAME PACKAGE... installs
# the packages given (the caller lists only those whose command is missing), as root, or fails
# with a message naming them. NAME is the caller, for the messages.
install_missing() {
  local who=$1
  shift
  [ $# -gt 0 ] || return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "$who: missing $*; install them or run as root" >&2
    exit 1
  fi
  echo "$who: installing $* from Debian" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
