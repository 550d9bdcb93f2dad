"""Benchmarks: ``python -m benchmarks`` fits each case and prints our times beside lme4's and the peers'."""
