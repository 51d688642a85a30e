"""Benchmarks: `make bench` (or `python -m benchmarks [NAME ...]`). Each `bench_*.py` has a `main(argv)`."""
