"""Bundle ids: UUID v4 shaped, never repeated within a process nor by a forked worker."""

from __future__ import annotations

import os
import uuid

from fhir_server.service.bundles import bundle, bundle_id


def test_bundle_ids_are_version_4_uuids_and_unique():
    ids = [bundle_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for i in ids[:100] + ids[-100:]:
        u = uuid.UUID(i)
        assert (u.version, u.variant, str(u)) == (4, uuid.RFC_4122, i)
    assert b'"id":"' in bundle("searchset", [])


def test_a_forked_worker_does_not_repeat_the_parent_ids():
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then leave without running pytest's teardown
        os.close(read_end)
        os.write(write_end, " ".join(bundle_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write_end)
    child = set(os.read(read_end, 1 << 16).decode().split())
    os.close(read_end)
    os.waitpid(pid, 0)
    parent = {bundle_id() for _ in range(100)}
    assert len(child) == 100 and not child & parent
    assert {i[:23] for i in child}.isdisjoint({i[:23] for i in parent})  # a prefix of its own
