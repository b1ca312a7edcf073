"""Run the Alembic migrations from Python (start-up and ``fhir-server migrate``)."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine


def script_location() -> Path:
    """The ``alembic/`` folder: beside the package in a checkout or editable
    install, or under ``<prefix>/share/fhir-server`` after ``pip install .``."""
    here = Path(__file__).resolve().parents[2] / "alembic"
    if (here / "env.py").exists():
        return here
    installed = Path(sys.prefix) / "share" / "fhir-server" / "alembic"
    if (installed / "env.py").exists():
        return installed
    raise FileNotFoundError("the alembic/ migrations folder was not found")


def _run(engine: Engine, action: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, revision)
        conn.commit()


def upgrade(engine: Engine, revision: str = "head") -> None:
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    _run(engine, "downgrade", revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
