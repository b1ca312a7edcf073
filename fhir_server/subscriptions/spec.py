"""A Subscription resource read into what the server acts on (:class:`Spec`), checked.

Two forms share the R4 ``Subscription`` resource (docs/subscriptions.md):

* **R4 criteria-based**: ``criteria`` is a search URL (``Encounter?patient=Patient/123``); the
  new value of a created or updated resource that matches is notified (R4 sends nothing on
  delete). ``channel.payload`` absent: a POST without a body; ``application/fhir+json``: a PUT of
  the resource to ``[endpoint]/[type]/[id]`` (subscription.html#channels).
* **Backport IG 1.1.0 topic-based**: ``criteria`` is one of the server's topic canonicals
  (:func:`topic_url`); filters are ``criteria.extension:backport-filter-criteria`` (search
  syntax, ANDed); ``channel.payload.extension:backport-payload-content`` says ``empty``,
  ``id-only`` or ``full-resource``; notifications are ``history`` Bundles with the
  SubscriptionStatus ``Parameters`` first.

Matching is done by the search engine (``subscriptions/matcher.py``): :attr:`Spec.params` is a
search on :attr:`Spec.res_type`. Secrets (``channel.header`` values, the signing secret) are
taken out of the resource (:func:`take_secrets`) and kept apart; the stored resource shows
:data:`REDACTED` instead.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from fhir_server.errors import FhirError
from fhir_server.resource_types import is_resource_type
from fhir_server.timeutil import datetime_range
from fhir_server.urlcodec import parse_qsl

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
FILTER_CRITERIA = BACKPORT + "backport-filter-criteria"
PAYLOAD_CONTENT = BACKPORT + "backport-payload-content"
HEARTBEAT_PERIOD = BACKPORT + "backport-heartbeat-period"
TIMEOUT = BACKPORT + "backport-timeout"
MAX_COUNT = BACKPORT + "backport-max-count"
CHANNEL_TYPE = BACKPORT + "backport-channel-type"
#: the Standard Webhooks signing secret (``whsec_`` + base64 of 24-64 random bytes)
SECRET = "https://fhir-server.id/StructureDefinition/subscription-secret"
TOPIC_BASE = "https://fhir-server.id/SubscriptionTopic/"
REDACTED = "[redacted]"

#: rest-hook (R4 and topic-based); websocket (topic-based: $get-ws-binding-token, bind-with-token)
CHANNELS = ("rest-hook", "websocket")
CONTENTS = ("empty", "id-only", "full-resource")
FHIR_JSON = "application/fhir+json"
INTERACTIONS = ("create", "update", "delete")
#: search parameters that shape a result page rather than select resources: meaningless here
_NOT_FILTERS = frozenset(
    {"_include", "_revinclude", "_sort", "_count", "_summary", "_elements", "_total", "_contained", "_containedType", "_cursor", "_format"}
)
_MAX_MAX_COUNT = 100


def topic_url(res_type: str, interaction: str | None = None) -> str:
    """The canonical of the topic "a ``res_type`` was created/updated/deleted" (one of them, or
    any of the three when ``interaction`` is None)."""
    return f"{TOPIC_BASE}{res_type}" + (f"-{interaction}" if interaction else "")


def parse_topic(url: str) -> tuple[str, tuple[str, ...]] | None:
    """(type, interactions) of one of the server's topic canonicals; None for any other URL."""
    if not url.startswith(TOPIC_BASE):
        return None
    name = url[len(TOPIC_BASE) :]
    res_type, _, interaction = name.partition("-")
    if not is_resource_type(res_type):
        return None
    if not interaction:
        return res_type, INTERACTIONS
    return (res_type, (interaction,)) if interaction in INTERACTIONS else None


@dataclass(frozen=True)
class Spec:
    #: "criteria" (R4) or "topic" (Backport IG)
    kind: str
    res_type: str
    #: the search that selects notified resources (criteria query / filters)
    params: list[tuple[str, str]]
    interactions: tuple[str, ...]
    channel: str
    endpoint: str | None
    #: channel.payload (a MIME type) or None
    payload: str | None
    #: empty | id-only | full-resource
    content: str
    topic: str | None = None
    heartbeat_s: int | None = None
    timeout_s: int | None = None
    #: events per notification (``backport-max-count``); None: the server's default
    max_count: int | None = None
    #: channel.header names (their values are secrets, kept apart)
    header_names: list[str] = field(default_factory=list)
    end_us: int | None = None
    #: the FHIR base URL the subscription was written through (references in notifications)
    base: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Spec:
        data = json.loads(text)
        data["params"] = [tuple(p) for p in data["params"]]
        data["interactions"] = tuple(data["interactions"])
        return cls(**data)


@dataclass(frozen=True)
class Secrets:
    #: full "Name: value" header lines, as channel.header gave them
    headers: list[str] = field(default_factory=list)
    #: the signing secret (``whsec_...``) or None
    secret: str | None = None

    def to_json(self) -> str:
        return json.dumps({"headers": self.headers, "secret": self.secret})

    @classmethod
    def from_json(cls, text: str | None) -> Secrets:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(list(data.get("headers") or []), data.get("secret"))


def _bad(text: str, where: str = "Subscription") -> FhirError:
    return FhirError.of(400, "invalid", text, where)


def _unprocessable(text: str, where: str = "Subscription") -> FhirError:
    return FhirError.of(422, "not-supported", text, where)


def _ext(holder: Any, url: str) -> list[dict[str, Any]]:
    if not isinstance(holder, dict):
        return []
    return [e for e in holder.get("extension") or [] if isinstance(e, dict) and e.get("url") == url]


def _one_value(holder: Any, url: str, key: str) -> Any:
    found = _ext(holder, url)
    if len(found) > 1:
        raise _bad(f"Extension {url} may appear only once")
    return found[0].get(key) if found else None


def _search_part(text: str, where: str) -> tuple[str, list[tuple[str, str]]]:
    """``Type?query`` (or a bare ``query`` for a filter) as (type or "", params)."""
    path, _, query = text.partition("?")
    if "?" not in text and "=" in text:
        path, query = "", text
    path = path.strip().strip("/")
    params = parse_qsl(query)
    for name, _ in params:
        if name.split(":", 1)[0] in _NOT_FILTERS:
            raise _unprocessable(f"Search parameter {name} does not select resources and is not allowed in subscription criteria", where)
    return path, params


def parse(resource: dict[str, Any]) -> Spec:
    """The :class:`Spec` of a Subscription resource; 400/422 for what this server cannot honour
    (the Backport IG: a server SHALL reject unsupported topics, filters, channels and payloads)."""
    criteria = resource.get("criteria")
    if not isinstance(criteria, str) or not criteria.strip():
        raise _bad("Subscription.criteria is required", "Subscription.criteria")
    channel = resource.get("channel")
    if not isinstance(channel, dict):
        raise _bad("Subscription.channel is required", "Subscription.channel")
    channel_type = channel.get("type")
    if _ext(channel.get("_type"), CHANNEL_TYPE):
        raise _unprocessable("Custom channel types (backport-channel-type) are not supported", "Subscription.channel.type")
    if channel_type not in CHANNELS:
        raise _unprocessable(f"Channel type {channel_type!r} is not supported (only {', '.join(CHANNELS)})", "Subscription.channel.type")
    endpoint = channel.get("endpoint")
    if channel_type == "rest-hook" and not (isinstance(endpoint, str) and endpoint):
        raise _bad("A rest-hook channel needs channel.endpoint", "Subscription.channel.endpoint")
    payload = channel.get("payload")
    if payload is not None and payload != FHIR_JSON:
        raise _unprocessable(f"Payload {payload!r} is not supported (only {FHIR_JSON})", "Subscription.channel.payload")
    content_code = _one_value(channel.get("_payload"), PAYLOAD_CONTENT, "valueCode")
    headers = channel.get("header") or []
    if not isinstance(headers, list) or not all(isinstance(h, str) and ":" in h for h in headers):
        raise _bad("Each channel.header must be 'Name: value'", "Subscription.channel.header")
    names = [h.split(":", 1)[0].strip() for h in headers]
    if any(not n or n.lower() in _RESERVED_HEADERS for n in names):
        raise _bad(f"channel.header may not set {', '.join(sorted(_RESERVED_HEADERS))}", "Subscription.channel.header")
    heartbeat = _one_value(channel, HEARTBEAT_PERIOD, "valueUnsignedInt")
    timeout = _one_value(channel, TIMEOUT, "valueUnsignedInt")
    max_count = _one_value(channel, MAX_COUNT, "valuePositiveInt")
    if max_count is not None and (not isinstance(max_count, int) or not 1 <= max_count <= _MAX_MAX_COUNT):
        raise _unprocessable(f"backport-max-count must be 1..{_MAX_MAX_COUNT}", "Subscription.channel")
    end = resource.get("end")
    end_us = _instant(end)

    topic = parse_topic(criteria)
    filters = [e.get("valueString") for e in _ext(resource.get("_criteria"), FILTER_CRITERIA)]
    if topic is not None:
        res_type, interactions = topic
        params: list[tuple[str, str]] = []
        for text in filters:
            if not isinstance(text, str) or not text:
                raise _bad("backport-filter-criteria needs a valueString", "Subscription.criteria")
            path, found = _search_part(text, "Subscription.criteria")
            if path and path != res_type:
                raise _unprocessable(f"Filter {text!r} is not on {res_type}, the topic's type", "Subscription.criteria")
            params.extend(found)
        if params and interactions == ("delete",):
            # filters are evaluated by the search engine on the stored resource: a deleted one matches none
            raise _unprocessable("Filters are not supported on a delete topic", "Subscription.criteria")
        if content_code is None:
            raise _bad("A topic-based subscription needs channel.payload with backport-payload-content", "Subscription.channel.payload")
        if content_code not in CONTENTS:
            raise _unprocessable(f"Payload content {content_code!r} is not supported", "Subscription.channel.payload")
        if payload is None:
            raise _bad("A topic-based subscription needs channel.payload (the MIME type)", "Subscription.channel.payload")
        kind, content, topic_canonical = "topic", content_code, criteria
    else:
        if channel_type == "websocket":
            raise _unprocessable(
                "The websocket channel carries topic-based notifications (Backport IG): put a topic in Subscription.criteria",
                "Subscription.channel.type",
            )
        if criteria.startswith(("http://", "https://")):
            raise _unprocessable(f"Topic {criteria!r} is not supported by this server", "Subscription.criteria")
        if filters:
            raise _bad("backport-filter-criteria needs a topic in Subscription.criteria", "Subscription.criteria")
        res_type, params = _search_part(criteria if "?" in criteria else criteria + "?", "Subscription.criteria")
        if not is_resource_type(res_type):
            raise _bad(f"Subscription.criteria must start with a resource type, not {res_type!r}", "Subscription.criteria")
        interactions = ("create", "update")
        kind, topic_canonical = "criteria", None
        content = content_code or ("full-resource" if payload else "empty")
        if content not in CONTENTS:
            raise _unprocessable(f"Payload content {content!r} is not supported", "Subscription.channel.payload")
    return Spec(
        kind=kind,
        res_type=res_type,
        params=params,
        interactions=interactions,
        channel=channel_type,
        endpoint=endpoint if channel_type == "rest-hook" else None,
        payload=payload,
        content=content,
        topic=topic_canonical,
        heartbeat_s=heartbeat if isinstance(heartbeat, int) and heartbeat > 0 else None,
        timeout_s=timeout if isinstance(timeout, int) and timeout > 0 else None,
        max_count=max_count,
        header_names=names,
        end_us=end_us,
    )


#: headers the server sets itself (signature, content, hop-by-hop): a subscription cannot set them
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "content-type", "webhook-id", "webhook-timestamp", "webhook-signature", "transfer-encoding", "connection"}
)


def check_secret(value: Any) -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 24..64 bytes."""
    if not isinstance(value, str) or not value.startswith("whsec_"):
        raise _bad("The subscription secret must be 'whsec_' followed by base64 of 24-64 random bytes", "Subscription.channel")
    try:
        raw = base64.b64decode(value[6:], validate=True)
    except ValueError:
        raise _bad("The subscription secret is not valid base64", "Subscription.channel") from None
    if not 24 <= len(raw) <= 64:
        raise _bad("The subscription secret must hold 24 to 64 bytes", "Subscription.channel")
    return value


def take_secrets(resource: dict[str, Any], previous: Secrets | None) -> Secrets:
    """Move header values and the signing secret out of ``resource`` (in place: the stored
    resource shows :data:`REDACTED`). A value sent back as :data:`REDACTED` (a client that PUTs
    what it read) keeps the stored one."""
    channel = resource.get("channel")
    if not isinstance(channel, dict):
        return Secrets()
    old_headers = {h.split(":", 1)[0].strip().lower(): h for h in (previous.headers if previous else [])}
    headers: list[str] = []
    redacted: list[str] = []
    for line in channel.get("header") or []:
        name, _, value = line.partition(":")
        name = name.strip()
        if value.strip() == REDACTED:
            kept = old_headers.get(name.lower())
            if kept is None:
                raise _bad(f"Header {name} is sent as {REDACTED} but no value is stored for it", "Subscription.channel.header")
            headers.append(kept)
        else:
            headers.append(f"{name}: {value.strip()}")
        redacted.append(f"{name}: {REDACTED}")
    if redacted:
        channel["header"] = redacted
    secret: str | None = None
    for ext in _ext(channel, SECRET):
        value = ext.get("valueString")
        if value == REDACTED:
            if previous is None or previous.secret is None:
                raise _bad(f"The secret is sent as {REDACTED} but none is stored", "Subscription.channel")
            secret = previous.secret
        else:
            secret = check_secret(value)
        ext["valueString"] = REDACTED
    return Secrets(headers, secret)


def _instant(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime_range(value)[0]
    except ValueError:
        raise _bad("Subscription.end is not a valid instant", "Subscription.end") from None
