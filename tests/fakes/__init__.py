"""Project-owned fakes used by tests and benchmarks (never imported at runtime)."""
