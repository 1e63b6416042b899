"""`INSERT ... ON CONFLICT DO UPDATE` statements built once, at import, and executed with a list
of rows (executemany): one statement SQLAlchemy compiles once and caches, where a multi-row
`VALUES` would be a new statement, compiled again, for every batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import ColumnElement, Table, text
from sqlalchemy.dialects.postgresql import Insert, insert


def upsert(table: Table, keys: Sequence[str], updates: Sequence[str], *,
           index_where: str | None = None,
           only_if: Callable[[Insert], ColumnElement[bool]] | None = None) -> Insert:
    """On a conflict on `keys` (a partial unique index: `index_where`), update `updates` from
    the row given; with `only_if(stmt)`, only where it holds (e.g. the stored row is older)."""
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys],
        index_where=text(index_where) if index_where else None,
        set_={c: stmt.excluded[c] for c in updates},
        where=only_if(stmt) if only_if else None)
