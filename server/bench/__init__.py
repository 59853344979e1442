"""Benchmarks, run by hand (`make bench`); figures go into the closing notes, not into tests."""
