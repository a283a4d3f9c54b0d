#!/usr/bin/env bash
# Start, stop or check the Docker engine that the containers provider uses.
#
#   docker/engine.sh start    start dockerd in the background unless one answers
#   docker/engine.sh stop     stop the dockerd that this script started
#   docker/engine.sh status   say whether an engine answers (exit 0) or not (1)
#
# Installs nothing: dockerd comes from Debian's docker.io package. The engine
# is started with no bridge and no iptables rules, because bullproof runs
# every container with host networking on 127.0.0.1 and must not touch the
# machine's network. Its log and pid file live in .bullproof/ at the top of
# the repository.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${BULLPROOF_STATE:-$root/.bullproof}"
log="$state/dockerd.log"
pidfile="$state/dockerd.pid"
timeout="${BULLPROOF_ENGINE_TIMEOUT:-60}"

answers() {
    docker info >/dev/null 2>&1
}

ours() {
    [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

start() {
    if answers; then
        echo "engine: a Docker engine already answers"
        return 0
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        echo "engine: dockerd not found; install it with" \
            "'apt-get install -y docker.io'" >&2
        return 1
    fi
    mkdir -p "$state"

    # setsid: the engine must outlive the shell (and the make) that started it.
    setsid dockerd \
        --bridge=none \
        --iptables=false \
        --ip6tables=false \
        --ip-masq=false \
        --pidfile="$state/dockerd.own.pid" \
        >>"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"

    local waited=0
    until answers; do
        if ! ours; then
            echo "engine: dockerd exited; last lines of $log:" >&2
            tail -n 20 "$log" >&2
            rm -f "$pidfile"
            return 1
        fi
        if ((waited >= timeout * 10)); then
            echo "engine: dockerd did not answer within ${timeout} s; see $log" >&2
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    # setsid may have forked: from now on, trust the pid dockerd wrote itself.
    if [[ -s "$state/dockerd.own.pid" ]]; then
        cp "$state/dockerd.own.pid" "$pidfile"
    fi
    echo "engine: started (pid $(cat "$pidfile"), log $log)"
}

stop() {
    if ! ours; then
        rm -f "$pidfile"
        echo "engine: no engine started by this script is running"
        return 0
    fi
    local pid
    pid="$(cat "$pidfile")"
    kill -TERM "$pid"

    # dockerd stops the containerd it started itself before it exits.
    local waited=0
    while kill -0 "$pid" 2>/dev/null; do
        if ((waited >= 300)); then
            echo "engine: dockerd (pid $pid) still running after 30 s; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "$pidfile"
    echo "engine: stopped (pid $pid)"
}

status() {
    if answers; then
        if ours; then
            echo "engine: answers (started by this script, pid $(cat "$pidfile"))"
        else
            echo "engine: answers (not started by this script)"
        fi
        return 0
    fi
    echo "engine: no Docker engine answers; start one with 'docker/engine.sh start'"
    return 1
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
