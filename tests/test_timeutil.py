"""FHIR instants of server times: the same text as datetime's strftime, from a per-second cache."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from fhir_server.timeutil import to_instant

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _reference(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "+00:00"


def test_instants_match_strftime_across_seconds_and_the_cache():
    rng = random.Random(3)
    base = 1_796_230_774_000_000
    values = [0, 1, 999_999, 1_000_000, -1, -1_000_000, 253_402_300_799_999_999, base - 1, base, base + 1]
    values += [base + rng.randrange(-3_000_000, 3_000_000) for _ in range(2000)]  # neighbours: cache hits
    values += [rng.randrange(-30_000_000_000_000_000, 253_402_300_799_999_999) for _ in range(2000)]
    for us in values:
        assert to_instant(us) == _reference(us), us


def test_years_before_1000_keep_four_digits():
    assert to_instant(-50_000_000_000_000_000).startswith("0385-")
