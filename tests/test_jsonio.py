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


def _regex_first(raw: bytes) -> Any:
    """How ``loads`` chose its parser before: the text searched for a lossy number every time."""
    if jsonio._LOSSY_NUMBER.search(raw):
        return jsonio.loads_exact(raw)
    import orjson

    return orjson.loads(raw)


def _typed(value: Any) -> Any:
    """``value`` with the type of every leaf kept (1 and 1.0 and Decimal('1.0') differ)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, str(value))


_IN_STRINGS = st.sampled_from(['", 1.50]', "x:1e3}", ",-0]", "[12345678901234567890123,"])


@settings(max_examples=800, deadline=None)
@given(
    st.recursive(
        st.one_of(_LEAVES, _IN_STRINGS),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.lists(st.tuples(_NAMES, inner), max_size=5).map(lambda pairs: ("obj", pairs))
        ),
        max_leaves=25,
    )
)
def test_orjson_first_reads_every_value_as_the_text_search_first_did(value):
    """``loads`` parses with orjson first and searches the text for a lossy number only when the
    value holds a float or the text a ``-0``: the values, and their types, are the same as when
    the text was searched first (numbers like ``1.50`` inside strings included)."""
    raw = _text(value, ":").encode()
    try:
        before = _typed(_regex_first(raw))
    except ValueError:
        with pytest.raises(jsonio.JsonError):
            jsonio.loads(raw)
        return
    assert _typed(jsonio.loads(raw)) == before
    assert jsonio.dumps(jsonio.loads(raw)) == jsonio.dumps(_regex_first(raw))


def test_a_number_orjson_refuses_takes_the_exact_path():
    assert str(jsonio.loads(b'{"a":1e400}')["a"]) == "1e400"
    with pytest.raises(jsonio.JsonError, match="Malformed JSON"):
        jsonio.loads(b'{"a":1.5')


@settings(max_examples=1500, deadline=None)
@given(
    st.booleans(),
    st.one_of(st.integers(min_value=0, max_value=10**21), st.integers(min_value=0, max_value=1000)),
    st.one_of(
        st.sampled_from(["", ".0", ".00", ".5", ".50", ".05", ".125", ".1250", ".0001", ".00001", ".0000001", ".000120"]),
        st.integers(min_value=0, max_value=10**18).map(lambda n: f".{n}"),
    ),
    st.sampled_from(["", "", "", "e3", "E-2", "e+0"]),
)
def test_every_number_is_written_back_as_it_was_read(negative, whole, fraction, exponent):
    """Whichever parser a number's text selects, it comes back as it was: ``1.0`` through
    orjson's float (a float writes it back unchanged); ``1.50``, ``12345678901234567.0`` and
    ``0.1234567890123456789`` (beyond a float's 15 exact digits), ``0.00001`` (a float writes
    ``1e-05``) and exponents through the exact path."""
    text = f"{'-' if negative else ''}{whole}{fraction}{exponent}"
    raw = f'{{"a":[{text},{{"b":{text}}}]}}'.encode()
    assert jsonio.dumps(jsonio.loads_client(raw)) == raw
    assert jsonio.dumps(jsonio.loads(raw)) == raw
