"""The order in which ``fhir-server import`` writes a set of resources whose references point
into each other (pure: no database).

Every resource is a node; a reference makes it depend on the node(s) it points at:

* a literal reference ``Type/id`` -> the node(s) with that type and id (a *soft* dependency:
  the server stores a literal reference whether or not its target exists);
* a conditional reference ``Type?identifier=system|value`` -> the nodes of that type with a
  matching identifier (compared case-insensitively, so a match is never missed), and one with
  any other search (``Type?name=...``) -> every node of that type (a *hard* dependency: the
  server resolves it by a search when the referrer is written, so the target must be committed
  in an earlier transaction; a target that is not in the import must already be stored);
* a second node with the same type and id -> the first (files are applied in order).

The strongly connected components of that graph (Tarjan, iterative) are condensed and each gets
a level, one more than the highest level it depends on; nodes are written by level, then in the
order they were read, in transactions that never hold a node together with a hard dependency of
it (:func:`batches`). A cycle of conditional references cannot be ordered: its members are
written twice (:class:`Plan`): first with each conditional reference into the cycle replaced by
the literal reference of its only match in the import (so every member exists), then, after
everything else, as they were read, so that the server resolves the conditional references
itself and the stored result is what a client sending them would get.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fhir_server.model.ids import is_valid_id
from fhir_server.model.references import reference_holders
from fhir_server.resource_types import is_resource_type
from fhir_server.urlcodec import parse_qsl


@dataclass
class Node:
    """One resource of the import: what the order needs, and its JSON (kept as bytes: smaller
    than the parsed form, parsed again when it is written)."""

    res_type: str
    res_id: str
    where: str
    body: bytes
    #: literal references (type, id)
    literal: list[tuple[str, str]] = field(default_factory=list)
    #: conditional references as written (``Practitioner?identifier=...``)
    conditional: list[str] = field(default_factory=list)
    #: identifiers as (system, value), case-folded; system "" when absent
    identifiers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return (self.res_type, self.res_id)


def references(resource: dict[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """The literal (type, id) and the conditional references anywhere in ``resource``."""
    literal: list[tuple[str, str]] = []
    conditional: list[str] = []
    for holder in reference_holders(resource):
        _classify(holder["reference"], literal, conditional)
    return literal, conditional


def _classify(reference: str, literal: list[tuple[str, str]], conditional: list[str]) -> None:
    if "?" in reference:
        if is_resource_type(reference.split("?", 1)[0]):
            conditional.append(reference)
        return
    if "://" in reference or reference.startswith(("#", "urn:")):
        return  # absolute (another server, or ours: the server decides), contained, or a URN
    parts = reference.split("/")
    if len(parts) in (2, 4) and is_resource_type(parts[0]) and is_valid_id(parts[1]) and (len(parts) == 2 or parts[2] == "_history"):
        literal.append((parts[0], parts[1]))


def identifiers(resource: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            system = ident.get("system")
            out.append(((system if isinstance(system, str) else "").casefold(), ident["value"].casefold()))
    return out


def _identifier_condition(query: str) -> list[tuple[str | None, str | None]] | None:
    """``identifier=[system]|[value]`` terms of a condition (each as (system or None for "any",
    value or None for "any")), or None when it searches anything else."""
    terms: list[tuple[str | None, str | None]] = []
    for name, value in parse_qsl(query):
        if name != "identifier":
            return None
        for alternative in value.split(","):  # a comma is OR: any of them may be the match
            if "|" in alternative:
                system, _, code = alternative.partition("|")
                terms.append((system.casefold(), code.casefold() or None))
            else:
                terms.append((None, alternative.casefold()))
    return terms or None


def _matches(ident: tuple[str, str], term: tuple[str | None, str | None]) -> bool:
    system, value = term
    return (system is None or ident[0] == system) and (value is None or ident[1] == value)


@dataclass
class Plan:
    #: node indexes in write order
    order: list[int]
    #: per node: the nodes it needs committed before it is written (its conditional references' matches)
    hard: list[set[int]]
    #: per node: the types whose every node it needs first (a condition that is not an identifier)
    hard_types: list[set[str]]
    #: first pass of a cycle member: conditional reference -> the node whose literal reference stands in for it
    placeholders: dict[int, dict[str, int]]
    #: cycle members written again, as read, after everything else
    second_pass: list[int]


def plan(nodes: list[Node]) -> Plan:
    n = len(nodes)
    by_key: dict[tuple[str, str], list[int]] = {}
    by_type: dict[str, list[int]] = {}
    by_identifier: dict[tuple[str, str], list[int]] = {}  # (type, value) -> nodes
    for i, node in enumerate(nodes):
        by_key.setdefault(node.key, []).append(i)
        by_type.setdefault(node.res_type, []).append(i)
        for ident in node.identifiers:
            by_identifier.setdefault((node.res_type, ident[1]), []).append(i)
    # one virtual node per type that some condition needs whole (after every node of the type)
    virtual: dict[str, int] = {}
    edges: list[list[int]] = [[] for _ in range(n)]
    hard: list[set[int]] = [set() for _ in range(n)]
    hard_types: list[set[str]] = [set() for _ in range(n)]
    matched: list[dict[str, list[int]]] = [{} for _ in range(n)]
    # a conditional reference's matches, once per distinct reference (a Synthea export names the
    # same few Practitioners and Organizations in thousands of resources)
    matches: dict[str, list[int] | None] = {}
    for i, node in enumerate(nodes):
        for key in node.literal:
            edges[i].extend(j for j in by_key.get(key, ()) if j < i or key != node.key)
        same = by_key[node.key]
        if same[0] != i:
            edges[i].append(same[same.index(i) - 1])  # a repeated resource comes after the one before it
        for reference in node.conditional:
            res_type, _, query = reference.partition("?")
            if reference not in matches:
                matches[reference] = _matching(res_type, query, nodes, by_type, by_identifier)
            found = matches[reference]
            if found is None:  # not an identifier condition: every node of the type
                if res_type in by_type:
                    if res_type not in virtual:
                        virtual[res_type] = n + len(virtual)
                        edges.append(list(by_type[res_type]))
                    edges[i].append(virtual[res_type])
                    hard_types[i].add(res_type)
                continue
            if found:
                matched[i][reference] = found
                edges[i].extend(found)
                hard[i].update(found)
    component = _components(edges)
    level = _levels(edges, component)
    placeholders, second_pass = _cycles(nodes, component, hard, hard_types, matched, virtual)
    order = sorted(range(n), key=lambda i: (level[component[i]], i))
    return Plan(order, hard, hard_types, placeholders, second_pass)


def _matching(
    res_type: str,
    query: str,
    nodes: list[Node],
    by_type: dict[str, list[int]],
    by_identifier: dict[tuple[str, str], list[int]],
) -> list[int] | None:
    """The nodes an identifier condition matches, sorted (None: a condition on anything else)."""
    terms = _identifier_condition(query)
    if terms is None:
        return None
    found = {
        j
        for term in terms
        for j in (by_identifier.get((res_type, term[1]), ()) if term[1] is not None else by_type.get(res_type, ()))
        if any(_matches(ident, term) for ident in nodes[j].identifiers)
    }
    return sorted(found)


def _components(edges: list[list[int]]) -> list[int]:
    """Tarjan's strongly connected components, iteratively; component numbers come in reverse
    topological order (a component's dependencies have lower numbers)."""
    count = len(edges)
    index = [-1] * count
    low = [0] * count
    on_stack = [False] * count
    component = [-1] * count
    stack: list[int] = []
    counter = components = 0
    for root in range(count):
        if index[root] != -1:
            continue
        work = [(root, 0)]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        while work:
            v, pos = work[-1]
            targets = edges[v]
            if pos < len(targets):
                work[-1] = (v, pos + 1)
                w = targets[pos]
                if index[w] == -1:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work.append((w, 0))
                elif on_stack[w]:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == index[v]:
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    component[w] = components
                    if w == v:
                        break
                components += 1
    return component


def _levels(edges: list[list[int]], component: list[int]) -> list[int]:
    """Per component: 0 without dependencies, else one more than the highest it depends on."""
    members: dict[int, list[int]] = {}
    for v, c in enumerate(component):
        members.setdefault(c, []).append(v)
    level = [0] * (max(component, default=-1) + 1)
    for c in range(len(level)):  # dependencies first (Tarjan's numbering)
        level[c] = max((level[component[w]] + 1 for v in members[c] for w in edges[v] if component[w] != c), default=0)
    return level


def _cycles(
    nodes: list[Node],
    component: list[int],
    hard: list[set[int]],
    hard_types: list[set[str]],
    matched: list[dict[str, list[int]]],
    virtual: dict[str, int],
) -> tuple[dict[int, dict[str, int]], list[int]]:
    """The members of a cycle that holds conditional references, and their stand-ins."""
    placeholders: dict[int, dict[str, int]] = {}
    second: list[int] = []
    for i in range(len(nodes)):
        c = component[i]
        inside = any(component[j] == c for j in hard[i]) or any(component[virtual[t]] == c for t in hard_types[i])
        if not inside:
            continue
        second.append(i)
        stand_ins = {}
        for reference, found in matched[i].items():
            if len(found) == 1 and component[found[0]] == c:
                stand_ins[reference] = found[0]
        if stand_ins:
            placeholders[i] = stand_ins
    return placeholders, second


def batches(plan: Plan, nodes: list[Node], size: int) -> Iterator[list[int]]:
    """``plan.order`` in transactions of at most ``size`` nodes, none holding a node with a hard
    dependency (a node it needs committed first, or a node of a type it needs whole) or a
    second node with the same type and id."""
    batch: list[int] = []
    members: set[int] = set()
    keys: set[tuple[str, str]] = set()
    types: dict[str, int] = {}
    for i in plan.order:
        node = nodes[i]
        needs = plan.hard[i].difference(plan.placeholders.get(i, {}).values())
        blocked = (
            len(batch) >= size
            or node.key in keys
            or any(j in members for j in needs)
            or any(types.get(t) for t in plan.hard_types[i] if t != node.res_type)
        )
        if blocked and batch:
            yield batch
            batch, members, keys, types = [], set(), set(), {}
        batch.append(i)
        members.add(i)
        keys.add(node.key)
        types[node.res_type] = types.get(node.res_type, 0) + 1
    if batch:
        yield batch


def prerequisites(plan: Plan, nodes: list[Node], batches: list[list[int]], serial_types: frozenset[str] = frozenset()) -> list[set[int]]:
    """Per transaction of ``batches`` (in the order :func:`batches` gave them): the earlier ones
    that must be committed before it is written, so that it may be written beside the others.

    Those are the ones written one after the other would give it: the earlier transactions that
    hold a hard dependency of one of its nodes (its conditional references' matches, less the
    stand-ins of a first pass), a node of a type one of its nodes needs whole, or an earlier
    node with the same type and id; with ``serial_types`` (types whose writes look at the other
    stored resources of their type, such as Patients when the MPI flags duplicates), every
    earlier transaction holding a node of its type. A literal reference needs nothing (the
    server stores it whether or not its target exists yet)."""
    batch_of = {i: b for b, batch in enumerate(batches) for i in batch}
    with_type: dict[str, set[int]] = {}
    last_with_key: dict[tuple[str, str], int] = {}
    out: list[set[int]] = []
    for b, batch in enumerate(batches):
        need: set[int] = set()
        for i in batch:
            node = nodes[i]
            stand_ins = set(plan.placeholders.get(i, {}).values())
            need.update(batch_of[j] for j in plan.hard[i] if j not in stand_ins and j in batch_of)
            for res_type in plan.hard_types[i] | ({node.res_type} & serial_types):
                need.update(with_type.get(res_type, ()))
            if node.key in last_with_key:
                need.add(last_with_key[node.key])
        for i in batch:
            with_type.setdefault(nodes[i].res_type, set()).add(b)
            last_with_key[nodes[i].key] = b
        out.append({a for a in need if a < b})  # a later one is not committed before it in one process either
    return out


def spread_start(
    plan: Plan, nodes: list[Node], batches: list[list[int]], after: list[set[int]], ways: int, serial_types: frozenset[str] = frozenset()
) -> tuple[list[list[int]], list[set[int]]]:
    """``batches`` and their ``after`` (:func:`prerequisites`) with the one transaction that can be
    written at the start, when there is only one (every other waits for it: the first level of
    the references, such as the Practitioners a Synthea export's Encounters name by identifier),
    split into ``ways`` parts, so that every worker writes from the start instead of one.

    Its nodes need nothing of each other (:func:`batches` cuts a transaction before a node that
    needs one of its members), so the parts may be written at once; what waited for the
    transaction waits for every part (the prerequisites are worked out again)."""
    first = [b for b, need in enumerate(after) if not need]
    if ways < 2 or len(first) != 1 or len(batches[first[0]]) < 2 * ways:
        return batches, after
    b = first[0]
    size = -(-len(batches[b]) // ways)
    parts = [batches[b][i : i + size] for i in range(0, len(batches[b]), size)]
    spread = [*batches[:b], *parts, *batches[b + 1 :]]
    return spread, prerequisites(plan, nodes, spread, serial_types)
