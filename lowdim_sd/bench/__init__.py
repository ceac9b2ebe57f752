"""Benchmarks that reproduce the paper's tables: methods, runner, reports."""
