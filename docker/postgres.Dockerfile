# PostgreSQL for bullproof, the source of truth of the system under test.
#
# BASE is the official image where a registry is reachable (the default), or
# bullproof/base:bookworm, made from Debian's packages by build-images.sh,
# where none is. Both put PostgreSQL 15 in /usr/lib/postgresql/15/bin and
# have a `postgres` user, which the server must run as.
ARG BASE=postgres:15-bookworm
FROM ${BASE}

ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data

COPY postgres-entrypoint.sh /usr/local/bin/bullproof-postgres

RUN chmod 0755 /usr/local/bin/bullproof-postgres \
    && postgres --version \
    && id postgres \
    && mkdir -p "$PGDATA" /var/run/postgresql \
    && chown postgres:postgres "$PGDATA" /var/run/postgresql

ENTRYPOINT ["/usr/local/bin/bullproof-postgres"]
CMD ["serve"]
