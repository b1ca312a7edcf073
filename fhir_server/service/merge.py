"""``Patient/$merge`` and ``Patient/$unmerge``: one person's two records become one, and back.

R5's ``$merge`` on R4, as HAPI does it (docs/mpi.md): the source becomes inactive with a
``replaced-by`` link to the target; the target gets a ``replaces`` link and the source's
identifiers with ``use = old`` (or becomes the client's ``result-patient``); every current
resource that refers to the source (found in the reference index) is rewritten to the target;
a Provenance records every version the merge wrote. All of it runs in one write transaction of
the caller's write path (``Pipeline.writer``), so it commits or fails whole, and the change log
and the request's AuditEvent record it. Provenance resources are history and keep pointing at
the source.

``$unmerge`` reads that Provenance and writes back the versions before the merge: the two
Patients (refused with 409 if either changed since), and each rewritten resource (its previous
version when unchanged since the merge, else its references turned back to the source).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from fhir_server.errors import FhirError, Issue
from fhir_server.mpi.features import extract
from fhir_server.mpi.references import rewrite
from fhir_server.search.parameters import params_for, resource_types
from fhir_server.service.access import Principal
from fhir_server.service.conditional import find_matches
from fhir_server.service.resources import ResourceService
from fhir_server.storage import repository as repo
from fhir_server.storage.index_tables import OTHER_REFERENCE
from fhir_server.storage.mpi_queries import mark_pair, referring
from fhir_server.timeutil import now_us, to_instant

LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
#: resources a merge never rewrites: they record history (who did what to which version)
_HISTORICAL = frozenset({"Provenance", "AuditEvent"})


@dataclass(frozen=True)
class MergeRequest:
    source_id: str
    target_id: str
    result_patient: dict[str, Any] | None = None
    preview: bool = False
    #: merge although the two carry different valid NIKs
    force: bool = False


@dataclass
class MergeResult:
    target: dict[str, Any]
    issues: list[Issue] = field(default_factory=list)
    #: (type, id) of the resources rewritten (or that would be, in a preview)
    rewritten: list[tuple[str, str]] = field(default_factory=list)
    provenance_id: str | None = None


class MergeService:
    def __init__(self, resources: ResourceService) -> None:
        self.resources = resources

    # -- resolving the two Patients ------------------------------------------------------------
    def resolve(self, conn: Connection, reference: Any, identifiers: list[Any], role: str, base: str) -> str:
        """The id of the Patient named by a Reference or by identifiers (exactly one of them)."""
        if (reference is None) == (not identifiers):
            raise FhirError.of(400, "invalid", f"Give exactly one of {role}-patient and {role}-patient-identifier")
        if reference is not None:
            ref = reference.get("reference") if isinstance(reference, dict) else None
            if not isinstance(ref, str):
                raise FhirError.of(400, "invalid", f"{role}-patient must be a Reference with a reference")
            parts = ref.split("/_history/")[0].rstrip("/").split("/")
            if len(parts) < 2 or parts[-2] != "Patient":
                raise FhirError.of(400, "invalid", f"{role}-patient must refer to a Patient")
            self.resources.read_in(conn, "Patient", parts[-1])  # 404 / 410
            return parts[-1]
        params = []
        for ident in identifiers:
            if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
                raise FhirError.of(400, "invalid", f"{role}-patient-identifier must be an Identifier with a value")
            params.append(("identifier", f"{ident.get('system', '')}|{ident['value']}" if ident.get("system") else ident["value"]))
        found = find_matches(conn, "Patient", params, base)
        if len(found) != 1:
            what = "no Patient" if not found else "more than one Patient"
            raise FhirError.of(422, "processing", f"{role}-patient-identifier matches {what}; it must match exactly one")
        return found[0]

    # -- merge ---------------------------------------------------------------------------------------
    def merge_in(self, conn: Connection, req: MergeRequest, principal: Principal, base: str) -> MergeResult:
        if req.source_id == req.target_id:
            raise FhirError.of(400, "invalid", "The source and the target are the same Patient")
        res = self.resources
        source_stored = res.read_in(conn, "Patient", req.source_id, for_update=True)
        target_stored = res.read_in(conn, "Patient", req.target_id, for_update=True)
        source, target = _parsed(source_stored.body), _parsed(target_stored.body)
        for patient, role in ((source, "source"), (target, "target")):
            if _linked(patient, "replaced-by"):
                raise FhirError.of(422, "business-rule", f"The {role} Patient/{patient['id']} was already merged into another record")
        issues = _nik_check(source, target, req.force)

        result = self._result(source, target, req)
        new_source = copy.deepcopy(source)
        new_source.pop("meta", None)
        new_source["active"] = False
        new_source["link"] = [*_list(new_source.get("link")), _link(req.target_id, "replaced-by")]

        found = referring(
            conn, "Patient", req.source_id, urls=[f"{base.rstrip('/')}/Patient/{req.source_id}"], url_params=_reference_params()
        )
        referrers = [(t, i) for t, i in found if t not in _HISTORICAL]
        referrers = [(t, i) for t, i in referrers if (t, i) not in (("Patient", req.source_id), ("Patient", req.target_id))]
        for res_type in sorted({t for t, _ in referrers}):
            principal.require(res_type, "update")
        principal.require("Provenance", "create")

        outcome = MergeResult(result, issues, referrers)
        if req.preview:
            outcome.issues.append(Issue("information", "informational", f"Merge would update {len(referrers) + 2} resources"))
            return outcome

        written = [
            res.update_in(conn, "Patient", req.target_id, result, method="POST").stored,
            res.update_in(conn, "Patient", req.source_id, new_source, method="POST").stored,
        ]
        for res_type, res_id in referrers:
            current = _parsed(res.read_in(conn, res_type, res_id, for_update=True).body)
            current.pop("meta", None)
            if rewrite(current, "Patient", req.source_id, req.target_id, base):
                written.append(res.update_in(conn, res_type, res_id, current, method="POST").stored)
        outcome.target = _parsed(written[0].body)
        provenance = {
            "resourceType": "Provenance",
            "target": [{"reference": s.location} for s in written],
            "recorded": to_instant(now_us()),
            "activity": {"coding": [{"system": LIFECYCLE, "code": "merge", "display": "Merge Record Lifecycle Event"}]},
            "agent": [{"who": {"display": principal.client_id}}],
            "entity": [
                {"role": "revision", "what": {"reference": target_stored.location}},
                {"role": "revision", "what": {"reference": source_stored.location}},
            ],
        }
        created = res.create_in(conn, "Provenance", provenance)
        mark_pair(conn, req.source_id, req.target_id, "merged", principal.stored_client_id, now_us())
        outcome.provenance_id = created.stored.res_id
        outcome.issues.append(
            Issue(
                "information",
                "informational",
                f"Merged Patient/{req.source_id} into Patient/{req.target_id}: {len(written)} resources updated; "
                f"Provenance/{outcome.provenance_id} records it ($unmerge with it restores both)",
            )
        )
        return outcome

    def _result(self, source: dict[str, Any], target: dict[str, Any], req: MergeRequest) -> dict[str, Any]:
        if req.result_patient is not None:
            result = copy.deepcopy(req.result_patient)
            if result.get("resourceType") != "Patient" or result.get("id") != req.target_id:
                raise FhirError.of(400, "invalid", "result-patient must be a Patient with the target's id")
            if not any(_points(link, req.source_id, "replaces") for link in _list(result.get("link"))):
                result["link"] = [*_list(result.get("link")), _link(req.source_id, "replaces")]
            result.pop("meta", None)
            return result
        result = copy.deepcopy(target)
        result.pop("meta", None)
        have = {(i.get("system"), i.get("value")) for i in _list(result.get("identifier"))}
        moved = [{**i, "use": "old"} for i in _list(source.get("identifier")) if (i.get("system"), i.get("value")) not in have]
        if moved:
            result["identifier"] = [*_list(result.get("identifier")), *moved]
        result["link"] = [*_list(result.get("link")), _link(req.source_id, "replaces")]
        return result

    # -- unmerge -------------------------------------------------------------------------------------
    def provenance_of(self, conn: Connection, provenance_id: str) -> dict[str, Any]:
        prov = _parsed(self.resources.read_in(conn, "Provenance", provenance_id).body)
        codes = [c.get("code") for c in _list((prov.get("activity") or {}).get("coding")) if c.get("system") == LIFECYCLE]
        if "merge" not in codes:
            raise FhirError.of(422, "business-rule", f"Provenance/{provenance_id} does not record a merge")
        return prov

    def unmerge_in(self, conn: Connection, provenance_id: str, principal: Principal, base: str) -> tuple[list[str], list[Issue]]:
        """Restore what the merge recorded in ``Provenance/provenance_id``; the references written."""
        res = self.resources
        prov = self.provenance_of(conn, provenance_id)
        targets = [_versioned(t.get("reference")) for t in _list(prov.get("target"))]
        if len(targets) < 2 or any(t is None for t in targets):
            raise FhirError.of(422, "processing", f"Provenance/{provenance_id} does not list the merged versions")
        versions = [t for t in targets if t is not None]
        (_, target_id, _), (_, source_id, _) = versions[0], versions[1]
        for res_type in sorted({t for t, _, _ in versions}):
            principal.require(res_type, "update")
        principal.require("Provenance", "create")
        issues: list[Issue] = []
        written = []
        for index, (res_type, res_id, version) in enumerate(versions):
            current = res.read_in(conn, res_type, res_id, for_update=True)
            if current.version == version:
                before = repo.get_version(conn, res_type, res_id, version - 1)
                if before is None or before.body is None:  # pragma: no cover - history is never pruned
                    raise FhirError.of(409, "conflict", f"{res_type}/{res_id} has no version before the merge")
                body = _parsed(repo.as_bytes(before.body))
            elif index < 2:
                raise FhirError.of(
                    409, "conflict", f"{res_type}/{res_id} changed after the merge (version {current.version}); restore it by hand"
                )
            else:
                body = _parsed(current.body)
                rewrite(body, "Patient", target_id, source_id, base)
                issues.append(
                    Issue("warning", "informational", f"{res_type}/{res_id} changed after the merge: only its references were restored")
                )
            body.pop("meta", None)
            written.append(res.update_in(conn, res_type, res_id, body, method="POST").stored.location)
        mark_pair(conn, source_id, target_id, "open", principal.stored_client_id, now_us())  # back in review
        res.create_in(
            conn,
            "Provenance",
            {
                "resourceType": "Provenance",
                "target": [{"reference": w} for w in written],
                "recorded": to_instant(now_us()),
                "activity": {"coding": [{"system": LIFECYCLE, "code": "unmerge", "display": "Unmerge Record Lifecycle Event"}]},
                "agent": [{"who": {"display": principal.client_id}}],
                "entity": [{"role": "source", "what": {"reference": f"Provenance/{provenance_id}"}}],
            },
        )
        return written, issues


@cache
def _reference_params() -> list[str]:
    """Codes of every reference search parameter and the pseudo-parameter of the references none
    covers (absolute references are indexed under them)."""
    return sorted({OTHER_REFERENCE} | {code for t in resource_types() for code, p in params_for(t).items() if p.type == "reference"})


def _parsed(body: bytes | None) -> dict[str, Any]:
    assert body is not None
    result: dict[str, Any] = orjson.loads(body)
    return result


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _link(other_id: str, kind: str) -> dict[str, Any]:
    return {"other": {"reference": f"Patient/{other_id}"}, "type": kind}


def _points(link: dict[str, Any], other_id: str, kind: str) -> bool:
    return link.get("type") == kind and (link.get("other") or {}).get("reference", "").split("/_history/")[0].endswith(
        f"Patient/{other_id}"
    )


def _linked(patient: dict[str, Any], kind: str) -> bool:
    return any(link.get("type") == kind for link in _list(patient.get("link")))


def _versioned(reference: Any) -> tuple[str, str, int] | None:
    if not isinstance(reference, str) or "/_history/" not in reference:
        return None
    head, _, version = reference.partition("/_history/")
    parts = head.split("/")
    if len(parts) < 2 or not version.isdigit():
        return None
    return parts[-2], parts[-1], int(version)


def _nik_check(source: dict[str, Any], target: dict[str, Any], force: bool) -> list[Issue]:
    a, b = extract(source).nik, extract(target).nik
    if a and b and a.valid and b.valid and a.value != b.value:
        text = f"The two records carry different valid NIKs ({a.value} / {b.value}): two people, or one NIK mistyped"
        if not force:
            raise FhirError(422, [Issue("error", "business-rule", text + "; merge refused (set force=true to merge anyway)")])
        return [Issue("warning", "business-rule", text + "; merged because force=true")]
    return []
