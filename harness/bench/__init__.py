"""Benchmarks of the harness's own pieces (the reference service)."""
