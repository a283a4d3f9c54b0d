# Toxiproxy for bullproof: the server that `make setup` built from its Go
# module, so that no registry is needed. It is linked against glibc, so
# BASE must be a glibc distribution: Debian's slim image where a registry is
# reachable, bullproof/base:bookworm where none is.
ARG BASE=debian:bookworm-slim
FROM ${BASE}

COPY toxiproxy-server /usr/local/bin/toxiproxy-server
COPY toxiproxy-entrypoint.sh /usr/local/bin/bullproof-toxiproxy
COPY toxiproxy.json /etc/bullproof/toxiproxy.json

RUN chmod 0755 /usr/local/bin/toxiproxy-server /usr/local/bin/bullproof-toxiproxy \
    && toxiproxy-server -version

ENTRYPOINT ["/usr/local/bin/bullproof-toxiproxy"]
CMD ["serve"]
