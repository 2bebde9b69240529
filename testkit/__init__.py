"""What the tests and the benchmarks share (neither imports the other's modules for it): helpers
meant for tests and benchmarks only, never shipped in an image."""
