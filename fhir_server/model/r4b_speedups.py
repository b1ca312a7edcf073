"""Faster pre-checks for fhir_core's per-instance validators, with the same verdicts.

The R4B model check (``FHIR_R4B_MODEL_CHECK``) costs ~310 µs of a Patient create, and
two thirds of it is not pydantic-core but three Python validators that fhir_core
(fhir.resources' base package) runs on *every* model instance, nested ones included:

- ``reject_null_complex_elements`` walks every field of the class (an Extension has
  ~50 ``value[x]`` fields) to find lists of complex types holding ``null``;
- ``_validate_one_of_many`` rebuilds the class's choice-field table and calls
  ``getattr`` for every choice field (again ~50 for an Extension);
- ``_validate_required_primitive_elements`` rebuilds its table the same way.

Each is replaced by a check that looks only at what the instance has, using per-class
tables computed once. The check never decides a failure itself: whenever it sees
anything that *might* fail (a null in a list, two choice values, a missing required
value), it calls fhir_core's own function, which then raises exactly the error it
always raised (or passes). So the verdicts and messages are fhir_core's; only the
common, valid case is shorter (tests/model/test_r4b_speedups.py compares both on
thousands of mutated resources).

A fourth saving is of another kind: inside ``memo`` (the write path's validation, after the
structure checker passed the resource), a nested element whose JSON was validated before into
the same model class is not validated again (``fhir_model_validator``): Synthea-like data
repeats its codings, references and concepts from one resource to the next.

How it is installed: the two instance methods are plain attributes of
``FHIRAbstractModel`` and are overridden there. The model validator was bound into
every model's pydantic-core schema when fhir.resources built its classes, so its
function's code object is swapped for a two-line trampoline into this module (the
original stays callable). ``install()`` checks the shapes it relies on first and
leaves fhir_core untouched if they differ (another fhir_core version); the project
pins ``fhir-core`` to the 1.1 series in ``pyproject.toml``. ``FHIR_R4B_SPEEDUPS=false``
switches it off.
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import orjson

log = logging.getLogger("fhir_server.model")

_installed = False
#: fhir_core's original functions, for the fallback (set by install())
_original: dict[str, Any] = {}

# per model class, computed once
_null_keys: dict[type, frozenset[str]] = {}
_choices: dict[type, tuple[frozenset[str], tuple[tuple[frozenset[str], bool], ...]] | None] = {}
_required: dict[type, tuple[str, ...]] = {}


# ------------------------------------------------------------------ reject_null_complex_elements


def _null_keys_of(cls: type) -> frozenset[str]:
    from fhir_core import fhirabstractmodel as fam

    keys: set[str] = set()
    for name, field in cls.model_fields.items():  # type: ignore[attr-defined]
        if not fam.is_list_type(field) or fam.is_primitive_type(field) or name.endswith("__ext"):
            continue
        keys.add(name)
        if field.alias:
            keys.add(field.alias)
    return frozenset(keys)


def reject_null_complex_elements(cls: type, data: Any) -> Any:
    """fhir_core's check, asked only when a list under a complex-list key holds a None."""
    if not isinstance(data, dict):
        return data
    keys = _null_keys.get(cls)
    if keys is None:
        keys = _null_keys[cls] = _null_keys_of(cls)
    for key in keys.intersection(data):
        value = data[key]
        # `None in value` is True whenever an item *is* None (identity is tried first)
        if isinstance(value, list) and None in value:
            return _original["reject_null_complex_elements"](cls, data)
    return data


# ------------------------------------------------------------------ _validate_one_of_many


def _choices_of(model: Any) -> tuple[frozenset[str], tuple[tuple[frozenset[str], bool], ...]] | None:
    cls = type(model)
    groups = model.get_one_of_many_fields()
    if not groups:
        return None
    table = []
    for prefix, fields in groups.items():
        infos = [cls.model_fields[f] for f in fields]
        extra = infos[0].json_schema_extra
        assert extra["one_of_many"] == prefix  # what fhir_core asserts on every call
        if any(info.default is not None for info in infos):
            raise _Unsupported(f"{cls.__name__}.{prefix}[x] has a non-None default")
        table.append((frozenset(fields), extra["one_of_many_required"] is True))
    every = frozenset().union(*(fields for fields, _ in table))
    return every, tuple(table)


class _Unsupported(Exception):
    """A class this module cannot pre-check: fhir_core's own code handles it."""


def validate_one_of_many(self: Any) -> None:
    cls = type(self)
    try:
        spec = _choices[cls]
    except KeyError:
        try:
            spec = _choices[cls] = _choices_of(self)
        except _Unsupported:
            spec = _choices[cls] = (frozenset(), ())  # marker: always fhir_core's
    if spec is None:
        return
    every, table = spec
    if not every:
        _original["_validate_one_of_many"](self)
        return
    # fields never given keep their default, None: only given fields can hold a value
    given = every.intersection(self.__pydantic_fields_set__)
    values = self.__dict__
    present = [f for f in given if values.get(f) is not None]
    for fields, required in table:
        n = len(fields.intersection(present)) if present else 0
        if n > 1 or (required and n == 0):
            _original["_validate_one_of_many"](self)  # raises fhir_core's error
            return


# ------------------------------------------------------------------ _validate_required_primitive_elements


def validate_required_primitive_elements(self: Any) -> None:
    cls = type(self)
    keys = _required.get(cls)
    if keys is None:
        aliases = cls.get_alias_mapping()
        keys = _required[cls] = tuple(aliases[name] for name, _ in self.get_required_fields())
    for key in keys:
        if getattr(self, key, None) is None:
            _original["_validate_required_primitive_elements"](self)  # decides (an extension may stand in)
            return


# ------------------------------------------------------------------ nested elements validated once

#: (model class, the element's JSON) -> the model instance its validation built; see ``memo``
_memo: dict[tuple[type, bytes], Any] = {}
#: bounds the memory: ~5 kB an entry (a model keeps its nested ones), so ~5 MB; on the Synthea
#: sample 1,024 entries hit as often as 8,192 (what repeats from one resource to the next is
#: small and frequent: codings, references, concepts). A large element (an attachment's data)
#: is rarely seen twice, and its model is big: not kept.
MEMO_MAX = 1024
MEMO_VALUE_MAX = 512
_memo_on: ContextVar[bool] = ContextVar("fhir_server_r4b_memo", default=False)
#: subclasses of str, int, dict and list (and keys that are not exactly str) are refused
_EXACT = orjson.OPT_PASSTHROUGH_SUBCLASS


@contextmanager
def memo() -> Iterator[None]:
    """Inside: each nested element (a CodeableConcept, a Reference, an Extension, a backbone
    element) whose JSON was validated before into a model of the same class is not validated
    again; its earlier model stands in. Validation is a function of the class and the JSON
    value; the key is the value's serialisation, so the verdict (and the model built) is the
    same, and a failed validation is never kept.

    Only for a resource the R4 structure checker passed (``validate_resource``): it checks
    every value's type exactly (arrays are lists, objects dicts, numbers finite ints or floats,
    no subclasses), so no tuple (which orjson writes like a list) is left, and for the rest
    orjson writes two values alike only when they are alike: it refuses subclasses, Decimals
    and integers beyond 64 bits, and an element with a ``null`` anywhere (a position in a
    primitive array; NaN would be written so too) is simply validated."""
    token = _memo_on.set(True)
    try:
        yield
    finally:
        _memo_on.reset(token)


def fhir_model_validator(cls: Any, value: Any, model_klass: Any) -> Any:
    """fhir_core's ``FhirBase.fhir_model_validator`` (how pydantic validates every nested FHIR
    element), answered from ``_memo`` inside ``memo``."""
    original = _original["fhir_model_validator"]
    if type(value) is not dict or not _memo_on.get():
        return original(cls, value, model_klass)
    try:
        text = orjson.dumps(value, option=_EXACT)
    except TypeError:  # a Decimal, a subclass, an integer beyond 64 bits: validated as always
        return original(cls, value, model_klass)
    if len(text) > MEMO_VALUE_MAX or b"null" in text:
        return original(cls, value, model_klass)
    key = (model_klass, text)
    found = _memo.get(key)
    if found is None:
        found = original(cls, value, model_klass)  # raises on a failure: nothing is kept
        if len(_memo) >= MEMO_MAX:
            _memo.clear()
        _memo[key] = found
    return found


# ------------------------------------------------------------------ installing


def _trampoline(cls, data):  # type: ignore[no-untyped-def]
    return _FHIR_SERVER_REJECT_NULLS(cls, data)  # type: ignore[name-defined]  # noqa: F821 (in fhir_core's globals)


def install() -> bool:
    """Install the pre-checks into fhir_core (idempotent); False when left untouched."""
    global _installed
    if _installed:
        return True
    if os.environ.get("FHIR_R4B_SPEEDUPS", "true").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        from fhir_core import fhirabstractmodel as fam
        from fhir_core.types import FhirBase as fhir_base
    except ImportError:  # pragma: no cover - fhir.resources always brings it
        return False
    base = fam.FHIRAbstractModel
    reject = base.__dict__.get("reject_null_complex_elements")
    func = getattr(reject, "__func__", None)
    shapes_ok = (
        isinstance(func, types.FunctionType)
        and func.__code__.co_varnames[:2] == ("cls", "data")
        and func.__code__.co_argcount == 2
        and not func.__code__.co_freevars
        and callable(getattr(fam, "is_list_type", None))
        and callable(getattr(fam, "is_primitive_type", None))
        and callable(base.__dict__.get("_validate_one_of_many"))
        and callable(base.__dict__.get("_validate_required_primitive_elements"))
        and isinstance(fhir_base.__dict__.get("fhir_model_validator"), classmethod)
    )
    if not shapes_ok:
        log.warning("fhir_core is not the version r4b_speedups knows; its validators are left as they are")
        return False
    assert func is not None
    _original["reject_null_complex_elements"] = types.FunctionType(
        func.__code__, func.__globals__, func.__name__, func.__defaults__, func.__closure__
    )
    _original["_validate_one_of_many"] = base._validate_one_of_many
    _original["fhir_model_validator"] = fhir_base.__dict__["fhir_model_validator"].__func__
    fhir_base.fhir_model_validator = classmethod(fhir_model_validator)  # type: ignore[assignment]
    _original["_validate_required_primitive_elements"] = base._validate_required_primitive_elements
    fam._FHIR_SERVER_REJECT_NULLS = reject_null_complex_elements  # type: ignore[attr-defined]
    func.__code__ = _trampoline.__code__.replace(co_name=func.__code__.co_name)
    base._validate_one_of_many = validate_one_of_many  # type: ignore[method-assign]
    base._validate_required_primitive_elements = validate_required_primitive_elements  # type: ignore[method-assign]
    _installed = True
    return True


def uninstall() -> None:
    """Put fhir_core's functions back (for the tests that compare both)."""
    global _installed
    if not _installed:
        return
    from fhir_core import fhirabstractmodel as fam

    base = fam.FHIRAbstractModel
    base.__dict__["reject_null_complex_elements"].__func__.__code__ = _original["reject_null_complex_elements"].__code__
    base._validate_one_of_many = _original["_validate_one_of_many"]  # type: ignore[method-assign]
    base._validate_required_primitive_elements = _original["_validate_required_primitive_elements"]  # type: ignore[method-assign]
    from fhir_core.types import FhirBase

    FhirBase.fhir_model_validator = classmethod(_original["fhir_model_validator"])  # type: ignore[assignment]
    _memo.clear()
    _installed = False
