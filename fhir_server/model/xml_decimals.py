"""Decimals through the R4B model's XML, with their precision (datatypes.html#decimal).

fhir_core keeps a decimal element as a ``decimal.Decimal`` (``Decimal('1.50')``) but turns it
into a float on every way out: its XML writer sends ``1.5`` for ``1.50``, ``0.0`` for ``0`` and
``1000.0`` for ``1e3``, and its JSON dump (how an XML body becomes the JSON this server stores)
writes ``1.5``. Both ways here keep the digits:

* out: :func:`install` has fhir_core's XML writer render a Decimal with :func:`decimal_text`;
  the JSON it starts from must then be read with exact decimals (``jsonio.loads``);
* in: :func:`restore_decimals` puts the model's Decimals back into its JSON dump as
  ``jsonio.ExactDecimal`` values, which ``jsonio.dumps`` writes exactly.
"""

from __future__ import annotations

import decimal
from typing import Any

from fhir_server.jsonio import ExactDecimal

_installed = False


def decimal_text(value: decimal.Decimal) -> str:
    """The FHIR text of a decimal with its digits: ``1.50``, ``0``, ``0.0000001``; a value read
    in E notation with a positive exponent stays in it (``1E+3``: one significant digit)."""
    if isinstance(value, ExactDecimal):
        return str(value)  # its text as read
    exponent = value.as_tuple().exponent
    return format(value, "f") if isinstance(exponent, int) and exponent <= 0 else str(value)


def install() -> None:
    """fhir_core's XML writer renders decimals with :func:`decimal_text` (once per process)."""
    global _installed
    if _installed:
        return
    from fhir_core import xml_utils

    original = xml_utils.xml_represent

    def xml_represent(type_: Any, val: Any, version_prefix: str = "") -> Any:
        if isinstance(val, decimal.Decimal) and xml_utils.get_fhir_type_name(type_, prefix=version_prefix) == "decimal":
            return decimal_text(val)
        return original(type_, val, version_prefix)

    xml_utils.xml_represent = xml_represent  # looked up as a module global by the writer
    _installed = True


def restore_decimals(instance: Any, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (``instance``'s JSON dump, where decimals are floats) with each decimal element
    replaced by the model's exact value."""
    from pydantic import BaseModel

    def walk(model: BaseModel, out: dict[str, Any]) -> None:
        for name, field in type(model).model_fields.items():
            value = model.__dict__.get(name)
            key = field.alias or name
            if value is None or key not in out:
                continue
            if isinstance(value, decimal.Decimal):
                out[key] = ExactDecimal(decimal_text(value))
            elif isinstance(value, BaseModel) and isinstance(out[key], dict):
                walk(value, out[key])
            elif isinstance(value, list) and isinstance(out[key], list) and len(out[key]) == len(value):
                items = out[key]
                for i, item in enumerate(value):
                    if isinstance(item, decimal.Decimal):
                        items[i] = ExactDecimal(decimal_text(item))
                    elif isinstance(item, BaseModel) and isinstance(items[i], dict):
                        walk(item, items[i])

    walk(instance, data)
    return data
