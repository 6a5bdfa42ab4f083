#!/usr/bin/env bash
# Multi-node Ray cluster on ONE machine, for developing and testing raygrid.
#
#   cluster/local.sh start [N_WORKERS] [--gpus-per-worker G] [--cpus-per-worker C]
#                          [--head-cpus C] [--port P] [--dashboard-port P]
#                          [--object-store-mb M] [--no-auth]
#   cluster/local.sh stop
#   cluster/local.sh status
#   cluster/local.sh env          # prints the `export` lines a client needs
#
# What `start` does
#   * one head node (`ray start --head`) with the dashboard / Jobs API bound to
#     127.0.0.1 only, and N worker nodes (`ray start --address ...`), each a separate
#     raylet on this host with its own --temp-dir and agent port. --num-gpus declares
#     *logical* GPUs: Ray schedules on them and sets CUDA_VISIBLE_DEVICES, even on a
#     machine without a GPU (no real device exists behind them).
#   * token authentication is ON (RAY_AUTH_MODE=token). The token lives in
#     $RAYGRID_LOCAL_DIR/auth_token (default dir: /tmp/raygrid-local-<uid>, mode 0700,
#     file mode 0600); it is generated on first start and reused afterwards. It is NOT
#     written to ~/.ray/auth_token, so other Ray sessions on the machine are unaffected.
#   * before any worker starts, the head must answer: its dashboard / Jobs API (an
#     authenticated GET /api/jobs/) and its Ray client server port.
#   * the state directory must be short: Ray puts Unix sockets under it, and a socket
#     path holds at most 107 bytes (AF_UNIX). `start` refuses a longer one at once.
#   * every node runs as `ray start --block` under its own session; its PID is kept in
#     $RAYGRID_LOCAL_DIR/pids. `stop` signals exactly those processes (and any process
#     that inherited this cluster's marker variable, e.g. workers and job drivers). It
#     never runs `ray stop`, which would kill every Ray process on the machine.
#
# Environment overrides: RAYGRID_LOCAL_DIR, RAYGRID_CLIENT_PORT (default 10001; must lie
# outside Ray's worker port range 10002-19999),
# RAYGRID_AGENT_PORT_BASE (default 52370, node i uses base+i;
# Ray's own default 52365 is left to plain ray.init() sessions), RAYGRID_START_TIMEOUT
# (seconds, default 120).
set -euo pipefail

STATE_DIR="${RAYGRID_LOCAL_DIR:-/tmp/raygrid-local-$(id -u)}"
[[ "$STATE_DIR" == /* ]] || STATE_DIR="$PWD/$STATE_DIR"
TOKEN_FILE="$STATE_DIR/auth_token"
CONF_FILE="$STATE_DIR/cluster.conf"
PID_DIR="$STATE_DIR/pids"
LOG_DIR="$STATE_DIR/logs"
RAY_TMP="$STATE_DIR/ray"
MARKER_VAR="RAYGRID_LOCAL_CLUSTER"
START_TIMEOUT="${RAYGRID_START_TIMEOUT:-120}"
START_OK=0

# Unix socket paths (AF_UNIX sun_path) hold at most 107 bytes plus the terminating NUL.
# Ray's longest socket path on a node is
#   <temp-dir>/session_<YYYY-MM-DD_HH-MM-SS_ffffff>_<pid>/sockets/<name>
# where <name> is at most "dash_TaskEventsHead" (19 bytes: the dashboard's module
# sockets, head only) and "plasma_store" (12 bytes) on the other nodes.
SOCKET_PATH_MAX=107
SESSION_NAME_LEN=35 # "session_" (8) + timestamp (26) + "_" (1); the pid follows
HEAD_SOCKET_NAME_LEN=19
NODE_SOCKET_NAME_LEN=12

die() {
    echo "local.sh: error: $*" >&2
    exit 1
}

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
}

find_ray() {
    RAY_BIN="$(command -v ray || true)"
    [[ -n "$RAY_BIN" ]] || die "'ray' not found on PATH (activate the venv: . .venv/bin/activate)"
    PY_BIN="$(dirname "$RAY_BIN")/python"
    [[ -x "$PY_BIN" ]] || PY_BIN="$(command -v python3)"
}

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

# True if the process carries this cluster's marker (guards against recycled PIDs).
is_ours() {
    { tr '\0' '\n' <"/proc/$1/environ"; } 2>/dev/null | grep -qxF "${MARKER_VAR}=${STATE_DIR}"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

load_conf() {
    [[ -f "$CONF_FILE" ]] || return 1
    # shellcheck disable=SC1090
    source "$CONF_FILE"
}

# shellcheck disable=SC2153  # GCS_PORT / DASHBOARD_PORT come from $CONF_FILE
print_env() {
    load_conf || die "no cluster configured in $STATE_DIR (run: $0 start)"
    echo "export RAY_ADDRESS=127.0.0.1:${GCS_PORT}"
    echo "export RAY_API_SERVER_ADDRESS=http://127.0.0.1:${DASHBOARD_PORT}"
    if [[ "${AUTH:-token}" == token ]]; then
        echo "export RAY_AUTH_MODE=token"
        echo "export RAY_AUTH_TOKEN_PATH=${TOKEN_FILE}"
        echo "unset RAY_AUTH_TOKEN"
    fi
}

running_pids() {
    local f
    shopt -s nullglob
    for f in "$PID_DIR"/*.pid; do
        local p
        p="$(cat "$f")"
        pid_alive "$p" && is_ours "$p" && echo "$p"
    done
    shopt -u nullglob
    return 0
}

# PIDs of processes carrying this cluster's marker in their environment (raylets, GCS,
# dashboard, Ray workers, job drivers all inherit it from the `ray start` process).
marked_pids() {
    local d p
    for d in /proc/[0-9]*; do
        p="${d#/proc/}"
        [[ "$p" == "$$" ]] && continue
        is_ours "$p" && echo "$p"
    done
    return 0
}

pid_digits() {
    local max
    max="$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 4194304)"
    echo "${#max}"
}

# Refuse a state directory under which Ray's socket paths would exceed the limit.
check_socket_paths() { # n_workers
    local n_workers="$1" pid_len longest node dir name_len len
    pid_len="$(pid_digits)"
    longest=0
    for node in head $( ((n_workers > 0)) && seq -f 'worker%g' 1 "$n_workers"); do
        dir="$RAY_TMP/$node"
        name_len=$NODE_SOCKET_NAME_LEN
        [[ "$node" == head ]] && name_len=$HEAD_SOCKET_NAME_LEN
        # <dir> "/" <session name> <pid> "/sockets/" (9) <name>
        len=$((${#dir} + 1 + SESSION_NAME_LEN + pid_len + 9 + name_len))
        ((len > longest)) && longest=$len
    done
    if ((longest > SOCKET_PATH_MAX)); then
        local room=$((${#STATE_DIR} - (longest - SOCKET_PATH_MAX)))
        die "state directory $STATE_DIR (${#STATE_DIR} characters) is too long: Ray's Unix socket paths under it would be up to $longest bytes, over the $SOCKET_PATH_MAX-byte limit of a Unix socket path (AF_UNIX). Use a RAYGRID_LOCAL_DIR of at most $room characters (the default is /tmp/raygrid-local-\$(id -u))."
    fi
}

wait_started() { # name pid logfile
    local name="$1" pid="$2" log="$3" t=0
    while ((t < START_TIMEOUT)); do
        if grep -q "Ray runtime started" "$log" 2>/dev/null; then
            return 0
        fi
        if ! pid_alive "$pid"; then
            echo "---- last lines of $log ----" >&2
            tail -n 30 "$log" >&2 || true
            die "$name exited during startup"
        fi
        sleep 1
        t=$((t + 1))
    done
    die "$name did not start within ${START_TIMEOUT}s (see $log)"
}

# The head is usable when its dashboard serves the Jobs API (an authenticated request,
# which also exercises the dashboard's module processes) and its client server listens.
head_answers() { # dashboard_port client_port auth
    port_in_use "$2" || return 1
    "$PY_BIN" - "$1" "$3" "$TOKEN_FILE" <<'EOF' 2>/dev/null
import sys, urllib.request
port, auth, token_file = sys.argv[1:4]
headers = {}
if auth == "token":
    with open(token_file) as f:
        headers["Authorization"] = "Bearer " + f.read().strip()
for path in ("/api/gcs_healthz", "/api/jobs/"):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        if response.status != 200:
            sys.exit(1)
EOF
}

wait_head_ready() { # pid dashboard_port client_port auth
    local pid="$1" t=0
    while ((t < START_TIMEOUT)); do
        head_answers "$2" "$3" "$4" && return 0
        pid_alive "$pid" || die "head exited during startup (see $LOG_DIR/head.log)"
        sleep 1
        t=$((t + 1))
    done
    die "head started, but within ${START_TIMEOUT}s its dashboard / Jobs API (http://127.0.0.1:$2) or Ray client server (port $3) did not answer; see $RAY_TMP/head/session_latest/logs/dashboard.log"
}

cmd_start() {
    local n_workers=1 gpus=0 cpus="" head_cpus="" gcs_port=6379 dash_port=8265
    local obj_mb=512 auth=token
    while (($#)); do
        case "$1" in
            --gpus-per-worker) gpus="${2:?}"; shift 2 ;;
            --cpus-per-worker) cpus="${2:?}"; shift 2 ;;
            --head-cpus) head_cpus="${2:?}"; shift 2 ;;
            --port) gcs_port="${2:?}"; shift 2 ;;
            --dashboard-port) dash_port="${2:?}"; shift 2 ;;
            --object-store-mb) obj_mb="${2:?}"; shift 2 ;;
            --no-auth) auth=disabled; shift ;;
            -h | --help) usage; exit 0 ;;
            [0-9]*) n_workers="$1"; shift ;;
            *) die "unknown argument: $1" ;;
        esac
    done
    local ncpu
    ncpu="$(nproc 2>/dev/null || echo 1)"
    [[ -n "$cpus" ]] || cpus="$ncpu"
    # The head only hosts the driver / job entrypoints when there are workers.
    if [[ -z "$head_cpus" ]]; then
        if ((n_workers > 0)); then head_cpus=0; else head_cpus="$ncpu"; fi
    fi
    local n
    for n in "$n_workers" "$gpus" "$cpus" "$head_cpus" "$gcs_port" "$dash_port" "$obj_mb"; do
        [[ "$n" =~ ^[0-9]+$ ]] || die "not a non-negative integer: $n"
    done
    local client_port="${RAYGRID_CLIENT_PORT:-10001}"
    local agent_base="${RAYGRID_AGENT_PORT_BASE:-52370}"
    check_socket_paths "$n_workers"

    find_ray
    if [[ -d "$PID_DIR" ]] && [[ -n "$(running_pids)" ]]; then
        die "a cluster from $STATE_DIR is already running (run: $0 stop)"
    fi
    local p
    for p in "$gcs_port" "$dash_port" "$client_port" $(seq "$agent_base" $((agent_base + n_workers))); do
        if port_in_use "$p"; then
            die "port $p on 127.0.0.1 is in use (another Ray session?); pick others with --port / --dashboard-port / RAYGRID_CLIENT_PORT / RAYGRID_AGENT_PORT_BASE"
        fi
    done

    (umask 077 && mkdir -p "$STATE_DIR")
    [[ -O "$STATE_DIR" && ! -L "$STATE_DIR" ]] || die "$STATE_DIR is not a directory of yours"
    chmod 700 "$STATE_DIR"
    rm -rf "$PID_DIR" "$LOG_DIR" "$RAY_TMP"
    mkdir -p "$PID_DIR" "$LOG_DIR" "$RAY_TMP"

    # Environment shared by every node of this cluster.
    unset RAY_ADDRESS RAY_API_SERVER_ADDRESS RAY_AUTH_TOKEN
    export RAY_USAGE_STATS_ENABLED=0
    export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="${RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S:-5}"
    export "${MARKER_VAR}=${STATE_DIR}"
    if [[ "$auth" == token ]]; then
        if [[ ! -s "$TOKEN_FILE" ]]; then
            # Same generator Ray uses for `ray get-auth-token --generate` (256 random bits),
            # written to our own file instead of ~/.ray/auth_token.
            (umask 077 && "$PY_BIN" -c 'import secrets; print(secrets.token_hex(32))' >"$TOKEN_FILE")
            echo "Generated a new auth token in $TOKEN_FILE"
        fi
        chmod 600 "$TOKEN_FILE"
        export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$TOKEN_FILE"
    else
        echo "WARNING: token authentication disabled (--no-auth): any local user can submit jobs." >&2
        export RAY_AUTH_MODE=disabled
        unset RAY_AUTH_TOKEN_PATH
    fi

    cat >"$CONF_FILE" <<EOF
GCS_PORT=$gcs_port
DASHBOARD_PORT=$dash_port
N_WORKERS=$n_workers
AUTH=$auth
EOF

    # From here on, a failure stops whatever nodes were already started.
    trap 'if ((!START_OK)); then echo "local.sh: start failed; stopping the nodes started so far" >&2; cmd_stop >&2 || true; fi' EXIT

    local common=(--block --disable-usage-stats
        --object-store-memory "$((obj_mb * 1024 * 1024))")

    echo "Starting head (127.0.0.1:$gcs_port, dashboard 127.0.0.1:$dash_port, CPU=$head_cpus) ..."
    setsid "$RAY_BIN" start --head "${common[@]}" \
        --port "$gcs_port" \
        --dashboard-host 127.0.0.1 --dashboard-port "$dash_port" \
        --ray-client-server-port "$client_port" \
        --dashboard-agent-listen-port "$agent_base" \
        --num-cpus "$head_cpus" --num-gpus 0 \
        --temp-dir "$RAY_TMP/head" \
        </dev/null >"$LOG_DIR/head.log" 2>&1 &
    echo $! >"$PID_DIR/head.pid"
    wait_started head "$!" "$LOG_DIR/head.log"
    echo "Checking the head's dashboard / Jobs API and client server ..."
    wait_head_ready "$(cat "$PID_DIR/head.pid")" "$dash_port" "$client_port" "$auth"

    local i
    for ((i = 1; i <= n_workers; i++)); do
        echo "Starting worker $i (CPU=$cpus, GPU=$gpus logical) ..."
        setsid "$RAY_BIN" start "${common[@]}" \
            --address "127.0.0.1:$gcs_port" \
            --dashboard-agent-listen-port "$((agent_base + i))" \
            --num-cpus "$cpus" --num-gpus "$gpus" \
            --temp-dir "$RAY_TMP/worker$i" \
            </dev/null >"$LOG_DIR/worker$i.log" 2>&1 &
        echo $! >"$PID_DIR/worker$i.pid"
        wait_started "worker $i" "$!" "$LOG_DIR/worker$i.log"
    done

    # shellcheck disable=SC2034  # read by the EXIT trap
    START_OK=1
    echo
    echo "Ray cluster up: 1 head + $n_workers worker(s). Logs: $LOG_DIR"
    echo "Connect a client (raygrid, ray.init(), ray job submit) from this shell with:"
    echo
    print_env | sed 's/^/    /'
    echo
    echo "or simply:  eval \"\$($0 env)\""
    echo "Dashboard (this machine only): http://127.0.0.1:$dash_port  (paste the token from $TOKEN_FILE)"
}

kill_and_wait() { # signal timeout pids...
    local sig="$1" timeout="$2" t=0
    shift 2
    (($#)) || return 0
    kill "-$sig" "$@" 2>/dev/null || true
    while ((t < timeout * 10)); do
        local alive=0 p
        for p in "$@"; do pid_alive "$p" && alive=1; done
        ((alive)) || return 0
        sleep 0.1
        t=$((t + 1))
    done
    return 1
}

cmd_stop() {
    local workers=() head="" f p
    shopt -s nullglob
    for f in "$PID_DIR"/worker*.pid; do
        p="$(cat "$f")"
        pid_alive "$p" && is_ours "$p" && workers+=("$p")
    done
    shopt -u nullglob
    if [[ -f "$PID_DIR/head.pid" ]]; then
        p="$(cat "$PID_DIR/head.pid")"
        pid_alive "$p" && is_ours "$p" && head="$p"
    fi
    if ((${#workers[@]})); then
        echo "Stopping ${#workers[@]} worker node(s): ${workers[*]}"
        kill_and_wait TERM 30 "${workers[@]}" || kill_and_wait KILL 5 "${workers[@]}" || true
    fi
    if [[ -n "$head" ]]; then
        echo "Stopping head node: $head"
        kill_and_wait TERM 30 "$head" || kill_and_wait KILL 5 "$head" || true
    fi
    # Anything left that belongs to this cluster (orphaned Ray workers, job drivers).
    local left
    mapfile -t left < <(marked_pids)
    if ((${#left[@]})); then
        echo "Cleaning up ${#left[@]} leftover process(es) of this cluster: ${left[*]}"
        kill_and_wait TERM 10 "${left[@]}" || kill_and_wait KILL 5 "${left[@]}" || true
    fi
    mapfile -t left < <(marked_pids)
    ((${#left[@]} == 0)) || die "processes still alive: ${left[*]}"
    rm -f "$PID_DIR"/*.pid
    echo "Stopped. (token kept in $TOKEN_FILE, logs in $LOG_DIR)"
}

cmd_status() {
    if ! load_conf; then
        echo "No local cluster configured in $STATE_DIR."
        return 3
    fi
    local f p any=0
    shopt -s nullglob
    for f in "$PID_DIR"/*.pid; do
        p="$(cat "$f")"
        if pid_alive "$p" && is_ours "$p"; then
            echo "$(basename "$f" .pid): running (pid $p)"
            any=1
        else
            echo "$(basename "$f" .pid): not running"
        fi
    done
    shopt -u nullglob
    if ((!any)); then
        echo "Cluster in $STATE_DIR is stopped."
        return 3
    fi
    find_ray
    echo
    (
        eval "$(print_env)"
        "$RAY_BIN" status --address "$RAY_ADDRESS"
    )
}

main() {
    local cmd="${1:-}"
    (($#)) && shift
    case "$cmd" in
        start) cmd_start "$@" ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        env) print_env ;;
        -h | --help | help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
