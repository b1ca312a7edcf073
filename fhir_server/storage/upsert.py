"""The dialect's ``INSERT`` construct, the one that has ``on_conflict_do_update`` /
``on_conflict_do_nothing``: SQLAlchemy keeps them per dialect, and this project runs on two."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def insert(dialect: str, table: sa.Table) -> Any:
    """``INSERT INTO table`` for ``dialect`` (``conn.dialect.name``), with its ``ON CONFLICT`` clauses."""
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)
