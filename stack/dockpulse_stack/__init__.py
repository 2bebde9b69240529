"""The tooling behind `dockpulse demo | down | stress`: a Docker engine, locally built images and
the Compose stack on this machine. Used by `make demo`, the tests and the benchmarks; no service
image contains it."""
