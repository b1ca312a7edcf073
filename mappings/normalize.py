"""Reading messy native input: key case, numbers where strings belong, date formats, empty values.

Dukcapil and BPJS deployments differ: ``NIK`` or ``nik``, ``NO_RT: 2`` instead of ``"002"``, birth
dates as ``1990-06-05``, ``05.06.1990`` or ``05-06-1990``, ``null``/``""`` for absent fields. Every
mapping reads its input through :class:`Record` and the ``as_*`` helpers so that all of them accept the
same variants and name the native field when something cannot be read.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from fhir_server.errors import FhirError

_DATE_FORMATS = (
    (re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$"), ("y", "m", "d")),
    (re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$"), ("y", "m", "d")),
    (re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$"), ("d", "m", "y")),
    (re.compile(r"^(\d{1,2})-(\d{1,2})-(\d{4})$"), ("d", "m", "y")),
    (re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$"), ("d", "m", "y")),
    (re.compile(r"^(\d{4})(\d{2})(\d{2})$"), ("y", "m", "d")),
)
_TIME_SUFFIX = re.compile(r"[T ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")


def invalid(field: str, message: str, *, code: str = "value", status: int = 422) -> FhirError:
    """The error for a native field that cannot be mapped (``field`` names it, e.g. ``peserta.noKartu``)."""
    return FhirError.of(status, code, f"{field}: {message}", field)


def missing(field: str) -> FhirError:
    return FhirError.of(422, "required", f"{field}: required field is missing", field)


def malformed(message: str, field: str | None = None) -> FhirError:
    return FhirError.of(400, "structure", message, field)


class Record:
    """A native JSON object read case-insensitively, with the path of each field for error messages.

    ``prefix`` is prepended to field names in errors (``peserta.``, ``request.t_sep.``).
    """

    __slots__ = ("_folded", "data", "prefix")

    def __init__(self, data: Mapping[str, Any], prefix: str = "") -> None:
        if not isinstance(data, Mapping):
            raise malformed(f"{prefix.rstrip('.') or 'body'}: expected a JSON object", prefix.rstrip(".") or None)
        self.data = data
        self._folded = {_fold(k): k for k in data}
        self.prefix = prefix

    def raw(self, *names: str) -> Any:
        """The first present value among ``names`` (key case and ``_`` ignored), or None."""
        for name in names:
            key = self._folded.get(_fold(name))
            if key is not None and self.data[key] is not None:
                return self.data[key]
        return None

    def path(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def text(self, *names: str) -> str | None:
        return as_text(self.raw(*names))

    def required_text(self, *names: str) -> str:
        value = self.text(*names)
        if value is None:
            raise missing(self.path(names[0]))
        return value

    def sub(self, name: str) -> Record:
        """A nested object (an empty one when absent or null)."""
        value = self.raw(name)
        if value is None:
            return Record({}, f"{self.prefix}{name}.")
        if not isinstance(value, Mapping):
            raise malformed(f"{self.path(name)}: expected a JSON object", self.path(name))
        return Record(value, f"{self.prefix}{name}.")

    def date(self, *names: str) -> str | None:
        value = self.raw(*names)
        return None if as_text(value) is None else as_date(value, self.path(names[0]))

    def kode(self, name: str) -> tuple[str | None, str | None]:
        """A BPJS ``{kode, keterangan|nama}`` pair (or a bare code)."""
        value = self.raw(name)
        if isinstance(value, Mapping):
            sub = Record(value)
            return sub.text("kode", "kd"), sub.text("keterangan", "nama", "nm")
        return as_text(value), None


def _fold(key: str) -> str:
    return str(key).replace("_", "").replace("-", "").lower()


def as_text(value: Any) -> str | None:
    """A string for a native scalar: numbers lose a ``.0``, blanks and empty strings become None."""
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def as_digits(value: Any, field: str, *, width: int | None = None, exact: int | None = None) -> str:
    """A digit string: JSON numbers are accepted (``NO_RT: 2``) and left-padded to ``width``."""
    text = as_text(value)
    if text is None:
        raise missing(field)
    text = re.sub(r"[\s.\-]", "", text)
    if not text.isdigit():
        raise invalid(field, f"'{value}' is not a number")
    if width is not None:
        text = text.zfill(width)
    if exact is not None and len(text) != exact:
        raise invalid(field, f"'{value}' must have {exact} digits")
    return text


def as_card_number(value: Any, field: str) -> str:
    """A BPJS card number (13 digits); a JSON number has lost its leading zeros, so it is padded back."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return as_digits(value, field, width=13, exact=13)
    return as_digits(value, field, exact=13)


def as_date(value: Any, field: str) -> str:
    """An ISO date from ``yyyy-MM-dd``, ``dd.MM.yyyy``, ``dd-MM-yyyy``, ``dd/MM/yyyy`` (a time part is dropped)."""
    text = as_text(value)
    if text is None:
        raise missing(field)
    text = _TIME_SUFFIX.sub("", text)
    for pattern, order in _DATE_FORMATS:
        m = pattern.match(text)
        if m:
            parts = dict(zip(order, (int(g) for g in m.groups()), strict=True))
            try:
                return dt.date(parts["y"], parts["m"], parts["d"]).isoformat()
            except ValueError:
                break
    raise invalid(field, f"'{value}' is not a valid date (yyyy-MM-dd, dd.MM.yyyy or dd-MM-yyyy)")


def as_flag(value: Any, field: str) -> bool | None:
    """A BPJS 0/1 flag ("0", 1, true, "ya") as a bool; None when absent."""
    text = as_text(value)
    if text is None:
        return None
    lowered = text.lower()
    if lowered in ("1", "true", "ya", "y"):
        return True
    if lowered in ("0", "false", "tidak", "n"):
        return False
    raise invalid(field, f"'{value}' is not 0 or 1")


def as_number(value: Any, field: str) -> int | float | None:
    """A measurement: int when whole, float otherwise (plain JSON numbers, no Decimal); None when absent."""
    text = as_text(value)
    if text is None:
        return None
    try:
        number = Decimal(text.replace(",", "."))
    except InvalidOperation:
        raise invalid(field, f"'{value}' is not a number") from None
    if not number.is_finite():
        raise invalid(field, f"'{value}' is not a number")
    return int(number) if number == number.to_integral_value() else float(number)


def iso_to_dmy(value: str) -> str:
    """``yyyy-MM-dd`` to P-Care's ``dd-MM-yyyy``."""
    y, m, d = value[:10].split("-")
    return f"{d}-{m}-{y}"


def check_metadata(payload: Mapping[str, Any]) -> None:
    """Raise FhirError 422 for a BPJS envelope whose ``metaData.code`` is not 200 (carrying its message)."""
    meta = Record(payload).raw("metaData")
    if isinstance(meta, Mapping):
        code = as_text(Record(meta).raw("code"))
        if code not in (None, "200"):
            message = Record(meta).text("message")
            raise FhirError.of(422, "processing", f"metaData.code {code}: {message}", "metaData.code")
