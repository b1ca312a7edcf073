"""The vendored R4 structure definitions (``data/r4_structures.json.gz``).

Generated from the official hl7.fhir.r4.core 4.0.1 package by
``scripts/generate_r4_definitions.py``; see ``data/README.md`` for the format.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA_FILE = Path(__file__).resolve().parent / "data" / "r4_structures.json.gz"


@lru_cache(maxsize=1)
def load_definitions() -> dict[str, Any]:
    """The parsed data file (read once per process; treat it as read-only)."""
    with gzip.open(DATA_FILE, "rb") as fh:
        return json.load(fh)
