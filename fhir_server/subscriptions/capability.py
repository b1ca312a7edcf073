"""What the CapabilityStatement says about subscriptions (Backport IG 1.1.0 ``backport-subscription-server-r4``):
the topics of every type, the channels and payloads, and the limits of Subscription writes."""

from __future__ import annotations

from typing import Any

from fhir_server.subscriptions.spec import CHANNELS, CONTENTS, INTERACTIONS, topic_url
from fhir_server.subscriptions.websocket import websocket_url

BACKPORT_SERVER = "http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/backport-subscription-server-r4"
TOPIC_CANONICAL = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"
#: the server's own statement of its channels and payload contents (R4 has no element for them)
CHANNEL_EXT = "https://fhir-server.id/StructureDefinition/subscription-channel-type"
CONTENT_EXT = "https://fhir-server.id/StructureDefinition/subscription-payload-content"
#: where clients find the websocket endpoint (R4 core extension; the Backport IG points to it)
WEBSOCKET_EXT = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket"


def rest_extensions(base: str) -> list[dict[str, Any]]:
    """``CapabilityStatement.rest.extension``: the websocket endpoint of the websocket channel."""
    return [{"url": WEBSOCKET_EXT, "valueUri": websocket_url(base)}]


def topic_extensions(res_type: str) -> list[dict[str, Any]]:
    """The topics on ``res_type``: any change, and create, update, delete apart."""
    return [{"url": TOPIC_CANONICAL, "valueCanonical": topic_url(res_type, i)} for i in (None, *INTERACTIONS)]


def resource_overrides(res_type: str) -> dict[str, Any]:
    if res_type != "Subscription":
        return {}
    return {
        "extension": [
            *topic_extensions(res_type),
            *({"url": CHANNEL_EXT, "valueCode": c} for c in CHANNELS),
            *({"url": CONTENT_EXT, "valueCode": c} for c in CONTENTS),
        ],
        "supportedProfile": ["http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"],
        "documentation": (
            "R4 criteria-based (criteria = a search URL; rest-hook, payload empty or application/fhir+json) and "
            "Subscriptions R5 Backport IG 1.1.0 topic-based subscriptions (criteria = a topic canonical listed on each "
            "resource type; backport-filter-criteria; payload empty, id-only or full-resource; heartbeats; "
            "$status, $events). Channels: rest-hook (https, or http inside FHIR_SUBSCRIPTION_ALLOWED_NETWORKS; "
            "Standard Webhooks headers and signature) and, for topic-based subscriptions, websocket "
            "($get-ws-binding-token, then 'bind-with-token <token>' at the URL of the capabilitystatement-websocket "
            "extension). Header values and the signing secret are "
            "never returned. Not supported on Subscription: PATCH, conditional update and delete, transaction "
            "Bundle entries (see docs/subscriptions.md)."
        ),
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
    }
