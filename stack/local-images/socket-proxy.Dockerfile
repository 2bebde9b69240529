# The exporter's Docker socket proxy: Debian bookworm's haproxy with
# exporter/socket-proxy/haproxy.cfg (GET of the exporter's reads only, 403 for everything else),
# for machines that cannot pull tecnativa/docker-socket-proxy. Non-root: the Docker socket's
# group (compose: `group_add: [DOCKER_GID]`) lets it reach dockerd; it listens on a unix socket in
# /run/docker-api, a volume only the exporter mounts besides it.
# BASE_IMAGE is the mmdebstrap rootfs of the service stand-ins (images.SERVICES_DEBIAN).
ARG BASE_IMAGE=dockpulse/services-debian:bookworm
FROM ${BASE_IMAGE}
COPY exporter/socket-proxy/haproxy.cfg /etc/dockpulse/socket-proxy.cfg
RUN mkdir -p /run/docker-api && chown 65534:65534 /run/docker-api && chmod 700 /run/docker-api
ENV DOCKER_API_PROXY_BIND=unix@/run/docker-api/docker.sock \
    DOCKER_SOCKET=/var/run/docker.sock
USER 65534:65534
# The command docker-compose.yaml gives tecnativa's image too (haproxy runs in the foreground).
CMD ["haproxy", "-f", "/etc/dockpulse/socket-proxy.cfg"]
