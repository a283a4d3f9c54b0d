"""Benchmarks that print figures, one per line as `name value unit`."""
