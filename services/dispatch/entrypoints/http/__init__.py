"""Dispatch's small HTTP app: health, readiness and metrics."""
