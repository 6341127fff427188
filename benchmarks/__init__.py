"""Benchmarks of the chargeback pipeline: ``python -m benchmarks`` (see README.md)."""
