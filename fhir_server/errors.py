"""The one error type of the server and its OperationOutcome form.

Every layer raises :class:`FhirError`; the HTTP layer turns it into an
OperationOutcome with the status it carries. Validation and parsing code that
collects several problems returns lists of :class:`Issue` instead of raising.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

#: characters a FHIR string may not hold (below U+0020 but tab, LF and CR: datatypes.html#string),
#: which XML 1.0 cannot carry at all; a diagnostic quoting what a client sent may contain them
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def printable(text: str) -> str:
    """``text`` with each control character a FHIR string may not hold written as ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text) if _CONTROL.search(text) else text


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue.

    ``code`` is an IssueType code (http://hl7.org/fhir/R4/valueset-issue-type.html):
    invalid, structure, required, value, invariant, code-invalid, not-supported,
    not-found, deleted, conflict, too-costly, processing, exception, security, ...
    ``expression`` is a FHIRPath-style location such as ``Patient.name[0].given[0]``.
    """

    severity: str
    code: str
    diagnostics: str
    expression: str | None = None

    @property
    def is_error(self) -> bool:
        """An error (or fatal) issue: the operation failed; a warning or information did not."""
        return self.severity in ("error", "fatal")

    def to_fhir(self) -> dict[str, Any]:
        # the texts quote what clients sent: kept to what a FHIR string (and XML) can hold
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": printable(self.diagnostics)}
        if self.expression:
            out["expression"] = [printable(self.expression)]
        return out


def error(code: str, diagnostics: str, expression: str | None = None) -> Issue:
    return Issue("error", code, diagnostics, expression)


def warning(code: str, diagnostics: str, expression: str | None = None) -> Issue:
    return Issue("warning", code, diagnostics, expression)


@dataclass
class FhirError(Exception):
    """A failure that becomes an OperationOutcome with HTTP ``status``."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:  # pragma: no cover - debugging aid
        return f"{self.status}: " + "; ".join(i.diagnostics for i in self.issues)

    @classmethod
    def of(cls, status: int, code: str, diagnostics: str, expression: str | None = None) -> FhirError:
        return cls(status, [error(code, diagnostics, expression)])


def operation_outcome(issues: Iterable[Issue]) -> dict[str, Any]:
    issue_list = [i.to_fhir() for i in issues]
    if not issue_list:
        issue_list = [{"severity": "information", "code": "informational", "diagnostics": "All OK"}]
    return {"resourceType": "OperationOutcome", "issue": issue_list}
