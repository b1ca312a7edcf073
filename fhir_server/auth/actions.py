"""Which scope actions (create, read, update, delete, search) each interaction and operation needs.

Interactions follow the SMART v2 definitions: ``r`` covers read, vread and
instance history; ``s`` covers type and system search and history; ``u``
covers update and patch (including update-as-create); ``c`` create; ``d``
delete. Conditional interactions also need ``search`` on the type because the
server searches on the client's behalf and the outcome tells what matched.

How the HTTP layer applies these (see docs/security.md):

* an interaction on type T needs ``scopes.allows(T, action)`` for every action
  returned by :func:`interaction_actions`;
* system-level search / history without ``_type`` needs
  ``scopes.allows_all_types("search")``, with ``_type`` it needs search on each type;
* ``_include`` / ``_revinclude`` results and ``$everything`` output of a type
  without ``read`` are left out of the Bundle (not an error);
* a transaction or batch checks every entry as its own interaction;
* an operation on type T (or an instance of T) needs every action of
  :func:`operation_actions` on T; a system-level operation needs them on every
  type (``allows_all_types``).
"""

from __future__ import annotations

INTERACTION_ACTIONS: dict[str, str] = {
    "read": "read",
    "vread": "read",
    "history-instance": "read",
    "create": "create",
    "update": "update",
    "patch": "update",
    "delete": "delete",
    "search-type": "search",
    "history-type": "search",
    "search-system": "search",
    "history-system": "search",
}

#: known operations (without ``$``) -> the actions they need on their type
OPERATION_ACTIONS: dict[str, frozenset[str]] = {
    # validation reads nothing but the resource it is given (or the stored one at instance level)
    "validate": frozenset({"read"}),
    "everything": frozenset({"read", "search"}),
    # the master patient index: $match reads and searches Patients
    "match": frozenset({"read", "search"}),
    # $merge / $unmerge rewrite Patients (and check update on every other type they rewrite)
    "merge": frozenset({"read", "search", "update"}),
    "unmerge": frozenset({"read", "search", "update"}),
    # duplicate review: listing pairs reads Patients; a verdict is a change to their records' review
    "duplicates": frozenset({"read", "search"}),
    "not-duplicate": frozenset({"read", "update"}),
    "meta": frozenset({"read"}),
    "meta-add": frozenset({"update"}),
    "meta-delete": frozenset({"update"}),
    "export": frozenset({"read", "search"}),
    "import": frozenset({"create", "update"}),
    # terminology: reading CodeSystem / ValueSet / ConceptMap content
    "lookup": frozenset({"read"}),
    "validate-code": frozenset({"read"}),
    "subsumes": frozenset({"read"}),
    "expand": frozenset({"read"}),
    "translate": frozenset({"read"}),
    # deliver a subscription's events again (Subscription/$replay): it changes the delivery state
    "replay": frozenset({"read", "update"}),
    # the SATUSEHAT sync: read on the type, plus a dedicated scope the handlers check
    # (system/satusehat.read, system/satusehat.write; docs/satusehat.md)
    "satusehat-status": frozenset({"read"}),
    "satusehat-sync": frozenset({"read"}),
}

#: what an operation not listed above needs: read-only ones "read", the others everything
_UNKNOWN_READ = frozenset({"read"})
_UNKNOWN_WRITE = frozenset({"create", "read", "update", "delete", "search"})


def interaction_actions(interaction: str, *, conditional: bool = False) -> frozenset[str]:
    """The actions a FHIR RESTful interaction code (``read``, ``search-type``, ...) needs.

    ``conditional`` is for conditional create, update, patch and delete (and
    conditional read by If-None-Match does not count: it is a plain read).
    """
    try:
        action = INTERACTION_ACTIONS[interaction]
    except KeyError:
        raise ValueError(f"unknown interaction {interaction!r}") from None
    if conditional and action in {"create", "update", "delete"}:
        return frozenset({action, "search"})
    return frozenset({action})


def operation_actions(name: str, *, affects_state: bool) -> frozenset[str]:
    """The actions operation ``$name`` needs on its resource type.

    ``affects_state`` is the registry's flag; it decides for operations this
    table does not know (and ``$import-*`` variants count as ``import``).
    """
    name = name.lstrip("$")
    if name in OPERATION_ACTIONS:
        return OPERATION_ACTIONS[name]
    if name.startswith("import"):
        return OPERATION_ACTIONS["import"]
    return _UNKNOWN_WRITE if affects_state else _UNKNOWN_READ
