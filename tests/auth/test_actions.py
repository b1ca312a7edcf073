"""Which scope actions each interaction and operation needs."""

from __future__ import annotations

import pytest

from fhir_server.auth.actions import interaction_actions, operation_actions


@pytest.mark.parametrize(
    "interaction, action",
    [
        ("read", "read"),
        ("vread", "read"),
        ("history-instance", "read"),
        ("create", "create"),
        ("update", "update"),
        ("patch", "update"),
        ("delete", "delete"),
        ("search-type", "search"),
        ("history-type", "search"),
        ("search-system", "search"),
        ("history-system", "search"),
    ],
)
def test_interactions_follow_smart_v2(interaction, action):
    assert interaction_actions(interaction) == {action}


@pytest.mark.parametrize("interaction", ["create", "update", "patch", "delete"])
def test_conditional_interactions_also_need_search(interaction):
    assert "search" in interaction_actions(interaction, conditional=True)


def test_unknown_interaction_is_a_programming_error():
    with pytest.raises(ValueError):
        interaction_actions("launch")


@pytest.mark.parametrize(
    "name, actions",
    [
        ("validate", {"read"}),
        ("$everything", {"read", "search"}),
        ("meta", {"read"}),
        ("meta-add", {"update"}),
        ("meta-delete", {"update"}),
        ("lookup", {"read"}),
        ("expand", {"read"}),
        ("validate-code", {"read"}),
        ("translate", {"read"}),
        ("subsumes", {"read"}),
        ("export", {"read", "search"}),
        ("import", {"create", "update"}),
        ("import-bpjs-peserta", {"create", "update"}),
    ],
)
def test_known_operations(name, actions):
    assert operation_actions(name, affects_state=False) == actions


def test_unknown_operations_need_read_or_everything():
    assert operation_actions("stats", affects_state=False) == {"read"}
    assert operation_actions("purge", affects_state=True) == {"create", "read", "update", "delete", "search"}
