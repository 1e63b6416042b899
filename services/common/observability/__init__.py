"""Observability: structured logging and Prometheus helpers."""
