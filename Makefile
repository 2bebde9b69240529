# dockpulse: `make demo` runs the whole stack, `make test` runs every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= normal
TARGET ?= http://127.0.0.1:8000
DURATION ?= 4m
WORKERS ?= 0

.PHONY: reload web-config install install-stack test test-fast test-users-host test-cgroupv2 lint bench-exporter bench-socket-proxy bench-probes bench-label-probes bench-relay bench-chaos bench-mail-chart bench-mail-context bench-demo-paths images demo down stress stress-local webapp-image bench-time-to-detect

# Two stamps: the demo needs only `.[stack]`; the tests need `.[dev]` (which includes it).
$(VENV)/.installed-stack: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[stack]'
	touch $@

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed-stack

install: $(VENV)/.installed

install-stack: $(VENV)/.installed-stack

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Two tiers (tests/conftest.py marks them): `fast` needs no dockerd, Prometheus, Alertmanager,
# PostgreSQL or Chromium; `make test` runs it first, then the rest, each test once.
test: lint
	$(PY) -m pytest -m 'fast and not guest and not users_host'
	$(PY) -m pytest -m 'not fast and not guest and not users_host'

test-fast: install
	$(PY) -m pytest -m 'fast and not guest and not users_host'

# make demo as a docker-group user on an engine at /var/run/docker.sock pulling through a
# registry mirror (tests/stack/test_registry_demo.py): 3.5 min cold (the project's images are
# built again on that engine), under a minute warm (~/.cache/dockpulse). CI runs it.
test-users-host: install
	$(PY) -m pytest -m users_host tests/stack

# The exporter on a cgroup v2 + systemd Debian guest under qemu (tests/hosts/): builds the
# image (cached in ~/.cache/dockpulse/guest by its inputs), boots it, asserts its checks under
# the systemd and cgroupfs drivers and rootless Docker: about 6 min cached, 7.5 min cold.
test-cgroupv2: install
	$(PY) -m pytest -m guest tests/hosts -s

images: install
	$(VENV)/bin/dockpulse images

bench-exporter: install
	$(PY) -m bench.exporter --containers 200

# Docker through the exporter's socket proxy against direct: full resync and inspect (p50/p99).
bench-socket-proxy: install
	$(PY) -m bench.socket_proxy --containers 200

# Probe run cost: a new connection per run against the old keep-alive Session (p50/p99, CPU).
bench-probes: install
	$(PY) -m bench.probes

# 200 probes from Docker labels every 5 s: exporter CPU, threads, sockets, against blackbox_exporter.
bench-label-probes: install
	$(PY) -m bench.label_probes --probes 200

bench-relay: install
	$(PY) -m bench.relay --duration 15 --clients 2

# Failure scenarios of the alert path (root: the disk-full one mounts a small tmpfs).
bench-chaos: install
	$(PY) -m bench.chaos

# A critical mail with and without its graph, webhook in -> mail in the outbox (p50/p99).
bench-mail-chart: install
	$(PY) -m bench.mail_chart --mails 50

# What a container's context adds to a critical mail (p50/p99); the event rings at 1,000 containers.
bench-mail-context: install
	$(PY) -m bench.mail_context --mails 40 --containers 1000

# `make demo` cold and warm on each path: their engine with a registry, offline, no Docker (root).
bench-demo-paths: install
	flock /tmp/dockpulse-stack.lock $(PY) -m bench.demo_paths

# The whole stack on this machine (Docker engine, images, docker-compose); Ctrl-C leaves it up.
demo: install-stack
	$(VENV)/bin/dockpulse demo

down: install-stack
	$(VENV)/bin/dockpulse down

# After editing a rule (prometheus/rules/) or alertmanager.yml: checked first, then reloaded.
reload: install-stack
	$(VENV)/bin/dockpulse reload

# The users' docker-compose.yaml: web/ holds the web configs and passwords its secrets name.
web-config: install-stack
	$(VENV)/bin/dockpulse web-config web

# WORKERS=N (stress, stress-local): a Locust master and N worker processes instead of one.
stress: install-stack
	$(VENV)/bin/dockpulse stress $(PROFILE) --duration $(DURATION) --workers $(WORKERS)

# Locust from the venv against a webapp already running at TARGET, headless for DURATION:
#   make stress-local PROFILE=cpu-intensive TARGET=http://127.0.0.1:8000 DURATION=60s WORKERS=2
stress-local: install
	STRESS_LEVEL=$(PROFILE) LOADTEST_WORKERS=$(WORKERS) LOCUST_LOCUSTFILE=loadtest/locustfile.py \
		$(VENV)/bin/dockpulse-loadtest --headless --host $(TARGET) --run-time $(DURATION) \
		--stop-timeout 10

# The demo app's image (dockpulse/webapp:local) on the Debian Python base built here.
webapp-image: install
	$(VENV)/bin/dockpulse images
	$(PY) -c 'from dockpulse_stack.engine import find_or_start_engine; from dockpulse_stack.images import WEBAPP, build_local_image; print(build_local_image(find_or_start_engine(), WEBAPP))'

bench-time-to-detect: install
	$(PY) -m bench.time_to_detect
