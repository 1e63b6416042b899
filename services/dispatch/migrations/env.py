"""Alembic environment of the dispatch (see services/common/migrations.py)."""

from services.common.migrations import run_env

run_env()
