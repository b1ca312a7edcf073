"""What a notification carries: Backport IG notification Bundles, R4 rest-hook payloads, and the
Standard Webhooks signature.

Backport (``backport-subscription-notification-r4``): a ``history`` Bundle whose first entry is
the SubscriptionStatus ``Parameters`` (its ``request`` the matching ``GET .../$status``), then
one entry per event: ``full-resource`` the version that triggered it, ``id-only`` its fullUrl
and request only, ``empty`` nothing but the event numbers.

Signature (https://www.standardwebhooks.com, v1): ``webhook-id`` (stable across retries of one
notification: the receiver's de-duplication key), ``webhook-timestamp`` (unix seconds) and, when
the subscription has a secret, ``webhook-signature: v1,<base64 HMAC-SHA256(key,
"{id}.{timestamp}.{body}")>`` where key is the base64-decoded part after ``whsec_``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from typing import Any

from fhir_server import jsonio
from fhir_server.subscriptions.spec import Spec
from fhir_server.subscriptions.store import Event
from fhir_server.timeutil import now_us, to_instant

_ACTION_METHOD = {"create": "POST", "update": "PUT", "delete": "DELETE"}


def status_parameters(
    base: str,
    sub_id: str,
    spec: Spec,
    status: str,
    kind: str,
    total: int,
    events: list[Event],
    errors: list[str] | None = None,
) -> dict[str, Any]:
    """The SubscriptionStatus ``Parameters`` (``backport-subscription-status-r4``)."""
    params: list[dict[str, Any]] = [{"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{sub_id}"}}]
    if spec.topic is not None and spec.content != "empty":
        params.append({"name": "topic", "valueCanonical": spec.topic})
    params += [
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(total)},
    ]
    for e in events:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(e.number)},
            {"name": "timestamp", "valueInstant": to_instant(e.recorded_us)},
        ]
        if spec.content != "empty":
            parts.append({"name": "focus", "valueReference": {"reference": f"{base}/{e.res_type}/{e.res_id}/_history/{e.version}"}})
        params.append({"name": "notification-event", "part": parts})
    for text in errors or []:
        params.append(
            {
                "name": "error",
                "valueCodeableConcept": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/subscription-error", "code": "no-response"}],
                    "text": text,
                },
            }
        )
    return {"resourceType": "Parameters", "id": str(uuid.uuid4()), "parameter": params}


def notification_bundle(
    base: str,
    sub_id: str,
    spec: Spec,
    status: str,
    kind: str,
    total: int,
    events: list[Event],
    bodies: dict[tuple[str, str, int], bytes | None] | None = None,
    errors: list[str] | None = None,
) -> bytes:
    """The notification Bundle (``bodies``: the stored versions of full-resource events)."""
    parameters = status_parameters(base, sub_id, spec, status, kind, total, events, errors)
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{parameters['id']}",
            "resource": parameters,
            "request": {"method": "GET", "url": f"{base}/Subscription/{sub_id}/$status"},
            "response": {"status": "200"},
        }
    ]
    if spec.content != "empty":
        for e in events:
            entry: dict[str, Any] = {
                "fullUrl": f"{base}/{e.res_type}/{e.res_id}",
                "request": {"method": _ACTION_METHOD[e.action], "url": f"{e.res_type}/{e.res_id}"},
                "response": {"status": "201" if e.action == "create" else ("204" if e.action == "delete" else "200")},
            }
            body = (bodies or {}).get((e.res_type, e.res_id, e.version))
            if spec.content == "full-resource" and body is not None:
                entry["resource"] = jsonio.loads(body)
            entries.append(entry)
    bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": ["http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4"]},
        "type": "history",
        "timestamp": to_instant(now_us()),
        "entry": entries,
    }
    return jsonio.dumps(bundle)


def notification_id(sub_id: str, kind: str, first_event: int | None, salt: int | None = None, last_event: int | None = None) -> str:
    """Stable across the retries of one notification (the receiver de-duplicates on it); a
    notification of several events is named by its range (``<first>-<last>``), so a later one
    that starts at the same event but carries more is never taken for a duplicate."""
    if first_event is None:
        tail = str(salt or 0)
    elif last_event is None or last_event == first_event:
        tail = str(first_event)
    else:
        tail = f"{first_event}-{last_event}"
    return f"{sub_id}.{kind}.{tail}"


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def webhook_headers(msg_id: str, timestamp: int, body: bytes, secret: str | None) -> dict[str, str]:
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if secret:
        headers["webhook-signature"] = signature(secret, msg_id, timestamp, body)
    return headers
