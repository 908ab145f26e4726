"""Integration tests: the real Docker engine, BuildKit, compose, registry, swarm, and the real stages."""
