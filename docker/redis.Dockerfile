# Redis and Sentinel for bullproof: one image, the role chosen at run time.
#
# BASE is the official image where a registry is reachable (the default), or
# bullproof/base:bookworm, made from Debian's packages by build-images.sh,
# where none is. Both have redis-server on the PATH and a `redis` user.
ARG BASE=redis:7.0-bookworm
FROM ${BASE}

COPY redis-entrypoint.sh /usr/local/bin/bullproof-redis

# Fail the build on a base without the binaries, not the first test run.
RUN chmod 0755 /usr/local/bin/bullproof-redis \
    && redis-server --version \
    && mkdir -p /data

WORKDIR /data
ENTRYPOINT ["/usr/local/bin/bullproof-redis"]
CMD ["master"]
