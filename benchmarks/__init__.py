"""Benchmark harness for signxai (run ``python -m benchmarks.run --help``)."""
