# Prometheus and Alertmanager from Debian bookworm's packages (2.42 / 0.25, the versions the
# users' docker-compose.yaml pins), for machines that cannot pull prom/prometheus.
# BASE_IMAGE is the mmdebstrap rootfs of the service stand-ins (images.SERVICES_DEBIAN).
ARG BASE_IMAGE=dockpulse/services-debian:bookworm
FROM ${BASE_IMAGE}
# /bin/prometheus and /bin/alertmanager, as in the upstream images (bookworm has merged /usr).
RUN mkdir -p /prometheus /alertmanager \
    && chown nobody:nogroup /prometheus /alertmanager \
    && ln -s prometheus-alertmanager /usr/bin/alertmanager
USER nobody
WORKDIR /prometheus
