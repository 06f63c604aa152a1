# shellcheck shell=bash
# Shared helpers for the service scripts in scripts/services/ (sourced, not run).
#
# The sourcing script sets SERVICE (its name) before sourcing this file.
# Env knobs:
#   PARALLAX_SERVICES_DIR   root of all service data (default: <repo>/.services);
#                           each service keeps everything under $PARALLAX_SERVICES_DIR/<name>
#   PARALLAX_SERVICES_WAIT  seconds to wait for a server to answer (default: 120)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck disable=SC2034 # used by the scripts that source this file
SERVICES_CONF="$REPO_ROOT/scripts/services/conf"
SERVICES_DIR="${PARALLAX_SERVICES_DIR:-$REPO_ROOT/.services}"
WAIT_SECONDS="${PARALLAX_SERVICES_WAIT:-120}"

say() { printf '%s: %s\n' "$SERVICE" "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

usage() {
  echo "usage: $0 start|stop|status|kill|pause|resume" >&2
  exit 2
}

# Absolute path of the data folder of this service, created if missing.
service_dir() {
  mkdir -p "$SERVICES_DIR/$SERVICE"
  (cd "$SERVICES_DIR/$SERVICE" && pwd)
}

# Serializes start/stop of one service: a second caller waits for the first.
# Holds fd 9; servers started under it must be launched with `9>&-`.
lock_service() {
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>"$1/.lock"
  flock -w "$((WAIT_SECONDS + 300))" 9 || die "another start/stop is still running (lock $1/.lock)"
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Runs a command as root: directly when root, else through passwordless sudo.
as_root() {
  if is_root; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    die "need root (or passwordless sudo) to run: $*"
  fi
}

# Installs Debian packages without prompts; runs `apt-get update` only when
# the first attempt fails. Keeps packages from starting their own services
# (temporary policy-rc.d) unless a policy is already in place.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install by hand: $*"
  say "installing Debian package(s): $*"
  local policy=/usr/sbin/policy-rc.d added=0 rc=0
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
    # shellcheck disable=SC2064 # expand now: $policy is local
    trap "as_root rm -f $policy" EXIT
    added=1
  fi
  apt_get_install "$@" || {
    say "install failed; running apt-get update and trying again"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || true
    apt_get_install "$@" || rc=$?
  }
  if [ "$added" -eq 1 ]; then
    as_root rm -f "$policy"
    trap - EXIT
  fi
  [ "$rc" -eq 0 ] || die "could not install: $*"
}

apt_get_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    --no-install-recommends -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold "$@" >&2
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Pid recorded in file $1 if that process is alive and its command line
# contains $2 (guards against a recycled pid); prints it, else fails.
live_pid() {
  local file="$1" marker="$2" pid
  [ -s "$file" ] || return 1
  pid="$(head -n1 "$file" | tr -dc '0-9')"
  [ -n "$pid" ] && alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker" || return 1
  echo "$pid"
}

# True while pid $1 runs: it exists and is not a zombie. A killed server
# stays a zombie where nothing reaps orphans (a container whose first
# process does not), and `kill -0` succeeds on a zombie.
alive() {
  local state
  state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
  [ -n "$state" ] && [ "$state" != Z ]
}

# Waits up to $1 seconds for pid $2 to exit (or die unreaped).
wait_exit() {
  local secs="$1" pid="$2" i
  for ((i = 0; i < secs * 5; i++)); do
    alive "$pid" || return 0
    sleep 0.2
  done
  ! alive "$pid"
}

# Stops pid $1: signal $2 (graceful), waits $3 seconds, then KILL.
stop_pid() {
  local pid="$1" sig="$2" secs="$3"
  say "stopping pid $pid (SIG$sig)"
  kill "-$sig" "$pid" 2>/dev/null || true
  wait_exit "$secs" "$pid" && return 0
  say "pid $pid still running after ${secs}s; sending KILL"
  kill -KILL "$pid" 2>/dev/null || true
  wait_exit 10 "$pid" || die "pid $pid did not exit"
}

# Prints the last lines of log file $1 on stderr.
log_tail() {
  [ -f "$1" ] || return 0
  say "last lines of $1:"
  tail -n "${2:-40}" "$1" | sed "s/^/  | /" >&2
}

# Fault injection (the fault suite, scripts/faults): sends signal $1 to the
# server this script started, by its recorded pid, and refuses when this
# script did not start it. The sourcing script defines `our_pid`.
#   KILL  the process dies at once (`kill`; then `start` brings it back)
#   QUIT  PostgreSQL's immediate shutdown: no checkpoint, recovery at start
#   STOP  frozen (`pause`), CONT  running again (`resume`)
signal_ours() {
  local sig="$1" pid
  pid="$(our_pid)" || die "not running, or not started by this script: no SIG$sig sent"
  kill "-$sig" "$pid" || die "could not send SIG$sig to pid $pid"
  say "sent SIG$sig to pid $pid"
  case "$sig" in
    KILL | QUIT)
      wait_exit 60 "$pid" || die "pid $pid did not exit after SIG$sig"
      rm -f "$PIDFILE"
      say "pid $pid exited"
      ;;
  esac
}
