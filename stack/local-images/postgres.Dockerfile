# PostgreSQL 15 from Debian bookworm's packages, with the official image's environment
# (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, PGPORT), for machines that cannot pull postgres.
ARG BASE_IMAGE=dockpulse/services-debian:bookworm
FROM ${BASE_IMAGE}
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
RUN mkdir -p "$PGDATA" && chown postgres:postgres "$PGDATA" && chmod 700 "$PGDATA"
COPY stack/local-images/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
USER postgres
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
CMD ["postgres"]
