"""Benchmarks, each runnable as ``python -m bench.<name>``; each prints its result last."""
