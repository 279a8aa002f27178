# common.sh: what every server script under scripts/servers/ shares (sourced, not run).
#
# A server script defines these functions and then calls `server_main "$@"`:
#   server_install            make sure the server's program is installed (idempotent)
#   server_launch PORT DIR    start the server on 127.0.0.1:PORT, state and log in DIR, in its
#                             own session (setsid), and set SERVER_PID and LOG
#   server_setup DIR          once it answers: make credentials, set AWS_ACCESS_KEY_ID and
#                             AWS_SECRET_ACCESS_KEY (exported)
#   server_is PID             true if PID runs this kind of server (stop refuses anything else)
# optionally
#   server_data_dirs PID      the directories holding the objects of the server PID, removed
#                             by stop once it has exited (its log and config stay)
# and the variable SERVER_NAME (for messages and the mktemp prefix).
#
# server_main then gives every server the same interface as scripts/s3-server documents:
# install, start [--port N] [--state-dir DIR] [--parent-pid PID], demo, stop PID, and the
# internal _watchdog and _is-server PID.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SERVERS_DIR="$ROOT/scripts/servers"
# The helpers run with the python of the moto virtualenv: it has boto3 for every server.
PY="$ROOT/.local/moto-venv/bin/python"
HELPER="$ROOT/scripts/s3_server_setup.py"
START_TIMEOUT=30
REGION=us-east-1
# Never send loopback requests through a proxy from the caller's environment.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"

say() { echo "s3-server[$SERVER_NAME]: $*" >&2; }
die() { say "error: $*"; exit 1; }

# The helper python (boto3) comes with moto's virtualenv, whatever server is tested.
ensure_helper_python() {
    "$SERVERS_DIR/moto" install
}

pid_alive() {
    local st
    st="$(cut -d')' -f2 "/proc/$1/stat" 2>/dev/null | awk '{print $1}')" || return 1
    [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

cmdline_of() {
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null
}

free_port() {
    "$PY" "$HELPER" freeport
}

# Random lower-case hex of $1 bytes.
random_hex() {
    od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
}

# Wait up to $2 tenths of a second for process $1 to be gone.
wait_gone() {
    local i
    for ((i = 0; i < $2; i++)); do
        pid_alive "$1" || return 0
        sleep 0.1
    done
    return 1
}

# Kill the process group of server PID (TERM, then KILL after ~5 s) and wait until it is gone.
kill_server() {
    local pid="$1"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    wait_gone "$pid" 50 && return 0
    say "server $pid did not exit on TERM; sending KILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 30 || die "server $pid is still running"
}

stop_server() {
    local pid="$1" dirs=() d
    [[ "$pid" =~ ^[0-9]+$ ]] || die "stop: not a PID: $pid"
    if ! pid_alive "$pid"; then
        say "server $pid is not running"
        return 0
    fi
    server_is "$pid" || die "stop: process $pid is not a $SERVER_NAME server; not killing it"
    # The test suite writes gigabytes over a run: a stopped server's objects go with it.
    if declare -F server_data_dirs >/dev/null; then
        mapfile -t dirs < <(server_data_dirs "$pid")
    fi
    kill_server "$pid"
    for d in "${dirs[@]}"; do
        [[ -n "$d" && -d "$d" ]] && rm -rf -- "$d"
    done
    return 0
}

# Set by start_server (and server_launch) for the cleanup trap and the caller.
SERVER_PID=""
LOG=""

cleanup_on_error() {
    if [[ -n "$SERVER_PID" ]]; then
        say "stopping server $SERVER_PID"
        stop_server "$SERVER_PID" || true
    fi
}

start_server() {
    local port="" state_dir="" parent_pid="" attempt p
    while (($#)); do
        case "$1" in
        --port) port="${2:?--port needs a value}"; shift 2 ;;
        --port=*) port="${1#--port=}"; shift ;;
        --state-dir) state_dir="${2:?--state-dir needs a value}"; shift 2 ;;
        --state-dir=*) state_dir="${1#--state-dir=}"; shift ;;
        --parent-pid) parent_pid="${2:?--parent-pid needs a value}"; shift 2 ;;
        --parent-pid=*) parent_pid="${1#--parent-pid=}"; shift ;;
        *) die "unknown option: $1" ;;
        esac
    done
    [[ -z "$port" || "$port" =~ ^[0-9]+$ ]] || die "bad port: $port"
    [[ -z "$parent_pid" || "$parent_pid" =~ ^[0-9]+$ ]] || die "bad parent PID: $parent_pid"
    [[ -z "$parent_pid" ]] || pid_alive "$parent_pid" || die "parent process $parent_pid is not running"
    ensure_helper_python
    server_install
    if [[ -z "$state_dir" ]]; then
        state_dir="$(mktemp -d "${TMPDIR:-/tmp}/s3mount-$SERVER_NAME.XXXXXX")"
    else
        mkdir -p "$state_dir"
        state_dir="$(cd "$state_dir" && pwd)"
    fi
    trap cleanup_on_error EXIT

    # With an automatically chosen port, another process may grab it between the choice and
    # the server's bind: then the server exits and we try another port.
    for attempt in 1 2 3; do
        p="$port"
        [[ -n "$p" ]] || p="$(free_port)"
        S3_ENDPOINT="http://127.0.0.1:$p"
        server_launch "$p" "$state_dir"
        say "started on 127.0.0.1:$p (pid $SERVER_PID, log: $LOG)"
        if [[ -n "$parent_pid" ]]; then
            # Own session, no inherited stdio: $(...) in the caller must not wait for it.
            setsid "$0" _watchdog "$parent_pid" "$SERVER_PID" </dev/null >/dev/null 2>&1 &
        fi
        if "$PY" "$HELPER" wait "$S3_ENDPOINT" "$START_TIMEOUT" "$SERVER_PID" "$(server_probe_path)"; then
            break
        fi
        if pid_alive "$SERVER_PID" || [[ -n "$port" || $attempt == 3 ]]; then
            say "log tail:"; tail -n 20 "$LOG" >&2 || true
            die "$SERVER_NAME did not start"
        fi
        SERVER_PID=""
        say "server exited (port taken?); retrying on another port"
    done

    if ! server_setup "$state_dir"; then
        say "log tail:"; tail -n 20 "$LOG" >&2 || true
        die "setting up credentials failed"
    fi
    [[ -n "${AWS_ACCESS_KEY_ID:-}" && -n "${AWS_SECRET_ACCESS_KEY:-}" ]] || die "no credentials from setup"
    export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    # Authentication must be on: a wrong secret refused, the right key accepted.
    "$PY" "$HELPER" check-auth "$S3_ENDPOINT" || die "authentication check failed"
}

# The path the readiness probe polls (any HTTP answer counts unless the server overrides it).
if ! declare -F server_probe_path >/dev/null; then
    server_probe_path() { echo /; }
fi

print_env() {
    echo "S3_ENDPOINT=$S3_ENDPOINT"
    echo "AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID"
    echo "AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY"
    echo "AWS_REGION=$REGION"
    echo "S3_SERVER_PID=$SERVER_PID"
    echo "S3_SERVER_LOG=$LOG"
}

server_main() {
    local cmd="${1:-}"
    [[ -n "$cmd" ]] || die "usage: see scripts/s3-server --help"
    shift
    case "$cmd" in
    install)
        (($# == 0)) || die "install takes no arguments"
        ensure_helper_python
        server_install
        ;;
    start)
        start_server "$@"
        print_env
        trap - EXIT
        say "ready at $S3_ENDPOINT (pid $SERVER_PID)"
        ;;
    demo)
        start_server "$@"
        "$PY" "$HELPER" demo "$S3_ENDPOINT" demo || die "creating the demo bucket failed"
        print_env
        echo "S3_BUCKET=demo"
        trap - EXIT
        say "demo bucket ready at $S3_ENDPOINT/demo (pid $SERVER_PID; stop with: scripts/s3-server stop $SERVER_PID)"
        ;;
    stop)
        (($# == 1)) || die "usage: stop PID"
        stop_server "$1"
        ;;
    _is-server)
        (($# == 1)) || die "usage: _is-server PID"
        pid_alive "$1" && server_is "$1"
        ;;
    _watchdog)
        # Internal: _watchdog PARENT_PID SERVER_PID (started by start --parent-pid): stop the
        # server within ~1 s once the parent is gone; exit by itself when the server is.
        (($# == 2)) || die "usage: _watchdog PARENT_PID SERVER_PID"
        while pid_alive "$1" && pid_alive "$2"; do
            sleep 1
        done
        if pid_alive "$2" && server_is "$2"; then
            stop_server "$2" || true
        fi
        ;;
    *) die "unknown command: $cmd (see scripts/s3-server --help)" ;;
    esac
}
