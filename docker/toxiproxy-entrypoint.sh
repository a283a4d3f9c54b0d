#!/bin/sh
# Start the Toxiproxy server in a bullproof container.
#
#   serve            run it on 127.0.0.1:${TOXIPROXY_PORT:-8474} with the
#                    proxies of /etc/bullproof/toxiproxy.json (or of
#                    TOXIPROXY_CONFIG), the client links of docker/compose.yaml
#   anything else    run it as given; the containers provider creates its
#                    proxies through the API
#
# BULLPROOF_LOG, when set, is a file the server's output is appended to.
set -eu

run() {
    if [ -n "${BULLPROOF_LOG:-}" ]; then
        exec "$@" >>"$BULLPROOF_LOG" 2>&1
    fi
    exec "$@"
}

if [ "${1:-serve}" != serve ]; then
    run "$@"
fi
run toxiproxy-server -host 127.0.0.1 -port "${TOXIPROXY_PORT:-8474}" \
    -config "${TOXIPROXY_CONFIG:-/etc/bullproof/toxiproxy.json}"
