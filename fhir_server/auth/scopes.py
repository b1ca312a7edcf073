"""SMART on FHIR scopes (v1 and v2) and what they allow.

Grammar: ``<context>/<resource type or *>.<permissions>`` where context is
``system``, ``user`` or ``patient``; permissions are v1 ``read``, ``write`` or
``*`` or v2 letters ``c r u d s`` (a non-empty subsequence, in that order).
v1 ``read`` = read + search, ``write`` = create + update + delete, ``*`` = all.

This is a backend-services server: there is no user login and no patient
launch context, so only ``system/`` scopes grant access. ``user/`` and
``patient/`` scopes (and v2 granular scopes with a ``?query``) parse, so a
token request that lists them is not an error, but they grant nothing and are
never issued. Non-resource scopes (``openid``, ``launch``, ``offline_access``)
are ignored the same way.

A resource scope must name an R4 resource type (or ``*``): a token request
naming an unknown type is refused as a whole (``invalid_scope``) and a client
cannot be registered with one.

AuditEvent is special: the audit trail is readable only with an explicit
``system/AuditEvent.read`` / ``system/AuditEvent.rs`` (``*`` wildcards never
cover it), and no scope lets a client create, update or delete AuditEvents.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from fhir_server.resource_types import is_resource_type

ACTIONS = ("create", "read", "update", "delete", "search")
_LETTERS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
_LETTER_OF = {action: letter for letter, action in _LETTERS.items()}
_V1 = {
    "read": frozenset({"read", "search"}),
    "write": frozenset({"create", "update", "delete"}),
    "*": frozenset(ACTIONS),
}

#: the resource type whose access no wildcard grants and no scope makes writable
AUDIT_TYPE = "AuditEvent"
AUDIT_ACTIONS = frozenset({"read", "search"})

#: scopes that name no resource type but one feature of this server (docs/security.md); no
#: wildcard grants them: a client has each only when registered with it
FEATURE_SCOPES = frozenset({"system/satusehat.read", "system/satusehat.write"})

_SCOPE = re.compile(
    r"(?P<context>system|user|patient)/(?P<type>\*|[A-Z][A-Za-z]{0,63})"
    r"\.(?P<perm>read|write|\*|c?r?u?d?s?)(?:\?(?P<query>.*))?"
)


class InvalidScope(ValueError):
    """A requested scope the server cannot grant as asked: RFC 6749 §5.2 ``invalid_scope``."""


@dataclass(frozen=True, slots=True)
class Scope:
    """One parsed resource scope, e.g. ``system/Patient.rs``."""

    text: str
    context: str
    res_type: str
    actions: frozenset[str]
    #: "v1" or "v2"
    version: str
    #: the v2 granular restriction after ``?`` (unsupported: such scopes grant nothing)
    query: str | None = None

    @property
    def grants(self) -> bool:
        """Whether this scope grants anything on this server."""
        return self.context == "system" and self.query is None and bool(self.effective_actions(self.res_type))

    @property
    def known_type(self) -> bool:
        """Whether the scope names ``*`` or an R4 resource type this server has."""
        return self.res_type == "*" or is_resource_type(self.res_type)

    def covers(self, res_type: str) -> bool:
        return self.res_type == res_type or (self.res_type == "*" and res_type != AUDIT_TYPE)

    def effective_actions(self, res_type: str) -> frozenset[str]:
        if res_type == AUDIT_TYPE:
            return self.actions & AUDIT_ACTIONS
        return self.actions


def parse_scope(text: str) -> Scope | None:
    """The parsed resource scope, or None for anything else (``openid``, typos, ...)."""
    m = _SCOPE.fullmatch(text)
    if m is None or m["perm"] == "":
        return None
    perm = m["perm"]
    if perm in _V1:
        actions, version = _V1[perm], "v1"
    else:
        actions, version = frozenset(_LETTERS[c] for c in perm), "v2"
    return Scope(text, m["context"], m["type"], actions, version, m["query"])


def split_scopes(value: str | Iterable[str] | None) -> list[str]:
    """Scope strings from a space-separated string or an iterable of them (order kept, no duplicates)."""
    if value is None:
        return []
    parts = value.split() if isinstance(value, str) else [p for v in value for p in v.split()]
    return list(dict.fromkeys(parts))


def validate_client_scopes(value: str | Iterable[str]) -> list[str]:
    """The scopes a client may be registered with: ``system/`` resource scopes only.

    Raises ValueError naming the first scope that would never grant anything.
    """
    scopes = split_scopes(value)
    if not scopes:
        raise ValueError("a client needs at least one scope, e.g. 'system/*.rs'")
    for text in scopes:
        if text in FEATURE_SCOPES:
            continue
        scope = parse_scope(text)
        if scope is None:
            raise ValueError(f"'{text}' is not a SMART resource scope (e.g. system/Patient.rs, system/*.read)")
        if scope.context != "system":
            raise ValueError(f"'{text}': only system/ scopes are supported (backend services, no user or patient context)")
        if scope.query is not None:
            raise ValueError(f"'{text}': scopes with a ?query restriction are not supported")
        if not scope.known_type:
            raise ValueError(f"'{text}': {scope.res_type} is not a FHIR R4 resource type")
        if not scope.grants:
            raise ValueError(f"'{text}' grants nothing: AuditEvent is never writable by clients")
    return scopes


@dataclass(frozen=True)
class ScopeSet:
    """The scopes of an access token, answering "may this client do X on type T"."""

    scopes: tuple[Scope, ...] = ()
    #: the feature scopes held (:data:`FEATURE_SCOPES`)
    features: frozenset[str] = frozenset()
    # action -> (granted on every type but AuditEvent, types granted explicitly)
    _grants: dict[str, tuple[bool, frozenset[str]]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        grants: dict[str, tuple[bool, frozenset[str]]] = {}
        for action in ACTIONS:
            wildcard = False
            types: set[str] = set()
            for scope in self.scopes:
                if not scope.grants:
                    continue
                if scope.res_type == "*":
                    wildcard = wildcard or action in scope.actions
                elif action in scope.effective_actions(scope.res_type):
                    types.add(scope.res_type)
            grants[action] = (wildcard, frozenset(types))
        object.__setattr__(self, "_grants", grants)

    @classmethod
    def parse(cls, value: str | Iterable[str] | None) -> ScopeSet:
        """Parse a space-separated scope string; anything that is not a resource scope is ignored."""
        texts = split_scopes(value)
        parsed = (parse_scope(text) for text in texts)
        return cls(tuple(s for s in parsed if s is not None), frozenset(t for t in texts if t in FEATURE_SCOPES))

    def has_feature(self, scope: str) -> bool:
        """Whether the feature scope ``scope`` (e.g. ``system/satusehat.read``) is held."""
        return scope in self.features

    def allows(self, res_type: str, action: str) -> bool:
        """Whether ``action`` (create, read, update, delete, search) is allowed on ``res_type``."""
        try:
            wildcard, types = self._grants[action]
        except KeyError:
            raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}") from None
        if res_type == AUDIT_TYPE:
            return action in AUDIT_ACTIONS and res_type in types
        return wildcard or res_type in types

    def allows_all_types(self, action: str) -> bool:
        """Whether ``action`` is allowed on every type (but AuditEvent): a wildcard grants it.

        For system-level search and history without ``_type``.
        """
        return self._grants[action][0]

    def explicit_types(self, action: str) -> frozenset[str]:
        """The types a non-wildcard scope grants ``action`` on (AuditEvent included when granted)."""
        return self._grants[action][1]

    def __str__(self) -> str:
        return " ".join([*(s.text for s in self.scopes), *sorted(self.features)])

    def __bool__(self) -> bool:
        return any(s.grants for s in self.scopes) or bool(self.features)


def narrow(requested: str | None, allowed: ScopeSet) -> list[str]:
    """The scopes to grant for a token request: ``requested`` narrowed to ``allowed``.

    With no ``requested`` scope, every granting scope the client has (the
    caller decides whether a request may omit it). A requested resource scope
    naming an unknown resource type raises :class:`InvalidScope`, whatever
    else is requested: RFC 6749 §5.2 counts an "unknown" scope as
    ``invalid_scope``, and granting the rest would hide the client's mistake.
    A requested scope fully within the client's scopes is granted as written;
    one only partly within is replaced by its intersection in v2 form
    (``system/*.cruds`` for a client with ``system/Patient.rs`` gives
    ``system/Patient.rs``); one outside is dropped. An empty result means
    ``invalid_scope``.
    """
    if requested is None or not requested.strip():
        # known_type: a client registered before unknown types were refused
        return [s.text for s in allowed.scopes if s.grants and s.known_type] + sorted(allowed.features)
    features = [t for t in split_scopes(requested) if t in FEATURE_SCOPES and allowed.has_feature(t)]
    parsed = [scope for scope in map(parse_scope, split_scopes(requested)) if scope is not None]
    for scope in parsed:
        if not scope.known_type:
            raise InvalidScope(f"'{scope.text}': {scope.res_type} is not a FHIR R4 resource type")
    granted: list[str] = []
    for scope in parsed:
        if not scope.grants:
            continue
        if _fully_allowed(scope, allowed):
            granted.append(scope.text)
        else:
            granted.extend(_intersection(scope, allowed))
    return list(dict.fromkeys([*granted, *features]))


def _fully_allowed(scope: Scope, allowed: ScopeSet) -> bool:
    if scope.res_type == "*":
        return all(allowed.allows_all_types(a) for a in scope.actions)
    return all(allowed.allows(scope.res_type, a) for a in scope.effective_actions(scope.res_type))


def _intersection(scope: Scope, allowed: ScopeSet) -> list[str]:
    out: list[str] = []
    if scope.res_type != "*":
        actions = {a for a in scope.effective_actions(scope.res_type) if allowed.allows(scope.res_type, a)}
        if actions:
            out.append(v2_scope(scope.res_type, actions))
        return out
    for held in allowed.scopes:
        if not held.grants or held.res_type == AUDIT_TYPE or not held.known_type:
            continue
        shared = scope.actions & held.actions
        if shared:
            out.append(v2_scope(held.res_type, shared))
    return out


def v2_scope(res_type: str, actions: Iterable[str]) -> str:
    """``system/<type>.<letters>`` with the letters in the canonical c r u d s order."""
    wanted = set(actions)
    letters = "".join(_LETTER_OF[a] for a in ACTIONS if a in wanted)
    return f"system/{res_type}.{letters}"
