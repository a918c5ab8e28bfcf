"""Metrics and the benchmark runner."""
