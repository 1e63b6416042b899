"""Alembic environment of the dispatch (see services/common/db/migrations.py)."""

from services.common.db.migrations import run_env

run_env()
