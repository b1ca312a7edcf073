"""``jsonio.loads_client``: a repeated property name in any object is found, exactly.

The check counts the ``"`` + ``:`` marks of the text against the properties the fast parse kept
and parses exactly only on a mismatch; these tests compare it with a reference (the standard
library's parser with a pairs hook) on generated JSON texts of every shape: repeated names at
any depth, escapes, blanks around the colon, marks inside string values, exact decimals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server import jsonio
from fhir_server.service.importer import read_items

_NAMES = st.sampled_from(["a", "b", "gender", "g\u00e9", 'q"', "x:", "", "value"])
_STRINGS = st.sampled_from(["", "plain", 'say "x": y', '":', "\\", 'a" :b', "\u00e9\U0001f600"])
_NUMBERS = st.sampled_from(["0", "-0", "-1", "1.50", "-0.0", "2.5", "1e3", "12345678901234567890123"])


def _text(value: Any, sep: str) -> str:
    """JSON text of ``value``: objects are lists of (name, value) pairs, so names may repeat."""
    if isinstance(value, tuple) and value and value[0] == "obj":
        members = (f"{json.dumps(k)}{sep}{_text(v, sep)}" for k, v in value[1])
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_text(v, sep) for v in value) + "]"
    if isinstance(value, tuple):  # ("num", text)
        return value[1]
    return json.dumps(value, ensure_ascii=bool(len(sep) % 2))


_LEAVES = st.one_of(_STRINGS, _NUMBERS.map(lambda n: ("num", n)), st.booleans(), st.none())
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(st.tuples(_NAMES, inner), max_size=5).map(lambda pairs: ("obj", pairs)),
    ),
    max_leaves=25,
)


def _has_duplicate(text: str) -> bool:
    found = False

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        found = found or len({k for k, _ in pairs}) != len(pairs)
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    return found


@settings(max_examples=600, deadline=None)
@given(_VALUES, st.sampled_from([":", " : ", ":\n ", "\t:"]))
def test_a_repeated_name_is_found_exactly_when_there_is_one(value, sep):
    text = _text(value, sep)
    expected = _has_duplicate(text)
    try:
        parsed = jsonio.loads_client(text.encode())
    except jsonio.DuplicateKey:
        assert expected, text
    else:
        assert not expected, text
        assert parsed == jsonio.loads(text.encode())


@pytest.mark.parametrize(
    ("text", "key", "loc"),
    [
        (b'{"a":1,"a":1}', "a", ()),
        (b'\xef\xbb\xbf{"a":1,"b":{"c":[1,{"d":1,"e":2,"d":3}]}}', "d", ("b", "c", 1)),
        (b'[{"x":1},{"y":{"z":1.50,"z":1.5}}]', "z", (1, "y")),
        # the first repetition in document order
        (b'{"p":{"q":1,"q":2},"r":{"s":1,"s":2}}', "q", ("p",)),
    ],
)
def test_the_error_names_the_property_and_the_object(text, key, loc):
    with pytest.raises(jsonio.DuplicateKey) as caught:
        jsonio.loads_client(text)
    assert (caught.value.key, caught.value.loc) == (key, loc)
    assert f"'{key}' appears more than once" in str(caught.value)


def test_an_integer_too_long_for_python_still_gets_the_check():
    """The exact parse reads numbers as text: a 5,000-digit integer (which ``int`` refuses) in a
    body with a mark in a string does not turn into a crash."""
    text = b'{"a":"x\\":","b":' + b"9" * 5000 + b"}"
    with pytest.raises(jsonio.JsonError):  # our loads refuses such an integer itself
        jsonio.loads_client(text)
    assert jsonio.loads_client(b'{"a":"x\\":","b":1}') == {"a": 'x":', "b": 1}


def test_import_reports_the_line_and_loads_the_others(tmp_path: Path):
    """``fhir-server import`` reads its NDJSON lines with the same rule."""
    path = tmp_path / "Patient.ndjson"
    path.write_bytes(
        b'{"resourceType":"Patient","id":"a"}\n'
        b'{"resourceType":"Patient","id":"b","gender":"male","gender":"female"}\n'
        b'{"resourceType":"Patient","id":"c"}\n'
    )
    errors: list[str] = []
    assert [item.resource["id"] for item in read_items(path, errors)] == ["a", "c"]
    assert len(errors) == 1 and errors[0].startswith(f"{path}:2: The property 'gender' appears more than once")


@pytest.mark.parametrize("number", ["-0", "-0.0", "-0.00", "-0e0", "0", "0.0", "-10", "-0.5"])
@pytest.mark.parametrize("form", ["[{}]", "[0,{}]", '{{"a":{}}}', '{{"a": {} }}', '{{"a":[1.5,{}]}}'])
def test_numbers_are_written_back_as_they_were_read(number, form):
    """``-0`` (FHIR's integer and decimal grammars allow it) was read by orjson as the integer 0
    and written back as ``0``; ``-0.0`` kept its text (a fraction ending in 0 takes the exact path)."""
    text = form.format(number)
    compact = text.replace(" ", "")
    assert jsonio.dumps(jsonio.loads(text.encode())).decode() == compact
    assert jsonio.dumps(jsonio.loads_client(text.encode())).decode() == compact
