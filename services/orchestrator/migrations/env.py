"""Alembic environment of the orchestrator (see services/common/db/migrations.py)."""

from services.common.db.migrations import run_env

run_env()
