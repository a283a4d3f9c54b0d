#!/bin/sh
# Start Redis or Sentinel in a bullproof container.
#
#   master | replica | sentinel   write a configuration from the environment
#                                 (first start only), then run the server
#   anything else                 run it as given; the containers provider
#                                 passes the configuration files it wrote
#
# Environment for the roles: REDIS_PASSWORD (required), REDIS_PORT,
# REDIS_MASTER_HOST and REDIS_MASTER_PORT (where the first master listens),
# REDIS_MASTER_NAME, SENTINEL_QUORUM, SENTINEL_DOWN_AFTER_MS,
# SENTINEL_FAILOVER_TIMEOUT_MS, REDIS_MAXMEMORY, REDIS_MIN_REPLICAS_TO_WRITE,
# REDIS_DIR. BULLPROOF_LOG, when set, is a file the server's output is
# appended to.
set -eu

die() {
    echo "bullproof-redis: $*" >&2
    exit 64
}

run() {
    if [ -n "${BULLPROOF_LOG:-}" ]; then
        exec "$@" >>"$BULLPROOF_LOG" 2>&1
    fi
    exec "$@"
}

role="${1:-master}"
case "$role" in
master | replica | sentinel) ;;
*) run "$@" ;;
esac

password="${REDIS_PASSWORD:-}"
[ -n "$password" ] || die "REDIS_PASSWORD must be set for the $role role"
case "$password" in
*[[:space:]]* | *\"* | *\'*) die "REDIS_PASSWORD must not hold spaces or quotes" ;;
esac

master_name="${REDIS_MASTER_NAME:-bullproof}"
master_host="${REDIS_MASTER_HOST:-127.0.0.1}"
master_port="${REDIS_MASTER_PORT:-6379}"
dir="${REDIS_DIR:-/data}"
mkdir -p "$dir"

if [ "$role" = sentinel ]; then
    port="${REDIS_PORT:-26379}"
    conf="$dir/sentinel.conf"
else
    port="${REDIS_PORT:-6379}"
    conf="$dir/redis.conf"
fi

# Written once: the servers rewrite their own file when Sentinel changes
# who is master, and a restart must keep that, not the first layout.
if [ ! -s "$conf" ]; then
    if [ "$role" = sentinel ]; then
        cat >"$conf" <<CONF
bind 127.0.0.1
port $port
daemonize no
dir $dir
sentinel resolve-hostnames no
requirepass $password
sentinel sentinel-pass $password
sentinel monitor $master_name $master_host $master_port ${SENTINEL_QUORUM:-2}
sentinel auth-pass $master_name $password
sentinel down-after-milliseconds $master_name ${SENTINEL_DOWN_AFTER_MS:-1000}
sentinel failover-timeout $master_name ${SENTINEL_FAILOVER_TIMEOUT_MS:-5000}
sentinel parallel-syncs $master_name 1
CONF
    else
        cat >"$conf" <<CONF
bind 127.0.0.1
port $port
daemonize no
dir $dir
appendonly yes
appendfsync everysec
save 900 1
save 300 10
save 60 10000
maxmemory ${REDIS_MAXMEMORY:-256mb}
maxmemory-policy noeviction
requirepass $password
masterauth $password
repl-diskless-sync-delay 0
min-replicas-to-write ${REDIS_MIN_REPLICAS_TO_WRITE:-0}
min-replicas-max-lag 10
CONF
        if [ "$role" = replica ]; then
            echo "replicaof $master_host $master_port" >>"$conf"
        fi
    fi
fi

if [ "$role" = sentinel ]; then
    run redis-server "$conf" --sentinel
fi
run redis-server "$conf"
