"""set_condition / get_condition keep metav1.Condition semantics without a clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kaito_api.conditions import (
    Condition,
    ConditionReason,
    ConditionStatus,
    ConditionType,
    get_condition,
    is_condition_true,
    set_condition,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5, microseconds=123)


def _cond(status: ConditionStatus, reason: str = "R", message: str = "") -> Condition:
    return Condition(
        type=ConditionType.RESOURCE_READY, status=status, reason=reason, message=message
    )


def test_new_condition_is_appended_with_now():
    existing = [Condition(type="Other", status="True", reason="X", last_transition_time=T0)]

    result = set_condition(existing, _cond(ConditionStatus.FALSE), T1)

    assert [c.type for c in result] == ["Other", "ResourceReady"]
    assert result[1].last_transition_time == T1.replace(microsecond=0)
    assert existing[0].type == "Other" and len(existing) == 1, "input untouched"


def test_same_status_keeps_transition_time_but_updates_reason_and_message():
    first = set_condition([], _cond(ConditionStatus.FALSE, "Pending", "waiting"), T0)

    second = set_condition(first, _cond(ConditionStatus.FALSE, "NodeNotReady", "node x"), T1)

    [condition] = second
    assert condition.last_transition_time == T0
    assert (condition.reason, condition.message) == ("NodeNotReady", "node x")


def test_status_change_moves_transition_time():
    first = set_condition([], _cond(ConditionStatus.FALSE), T0)

    [condition] = set_condition(first, _cond(ConditionStatus.TRUE), T1)

    assert condition.status == ConditionStatus.TRUE
    assert condition.last_transition_time == T1.replace(microsecond=0)


def test_duplicates_of_a_type_collapse_to_one():
    dupes = [_cond(ConditionStatus.TRUE), _cond(ConditionStatus.FALSE)]

    result = set_condition(dupes, _cond(ConditionStatus.TRUE), T1)

    assert len(result) == 1


def test_get_and_is_true():
    conditions = set_condition([], _cond(ConditionStatus.TRUE), T0)

    assert get_condition(conditions, "ResourceReady") is conditions[0]
    assert get_condition(conditions, "InferenceReady") is None
    assert get_condition(None, "ResourceReady") is None
    assert is_condition_true(conditions, ConditionType.RESOURCE_READY)
    assert not is_condition_true(conditions, ConditionType.INFERENCE_READY)


def test_condition_serialises_like_the_api_server():
    [condition] = set_condition([], _cond(ConditionStatus.TRUE, ConditionReason.RESOURCE_READY), T1)

    assert condition.model_dump(exclude_none=True) == {
        "type": "ResourceReady",
        "status": "True",
        "reason": "WorkspaceResourceStatusSuccess",
        "message": "",
        "lastTransitionTime": "2026-01-02T03:09:05Z",
    }


def test_condition_parses_api_server_json():
    raw = {
        "type": "Ready",
        "status": "Unknown",
        "reason": "AwaitingReconciliation",
        "message": "object is awaiting reconciliation",
        "lastTransitionTime": "2026-01-02T03:04:05Z",
        "observedGeneration": 1,
    }

    condition = Condition.model_validate(raw)

    assert condition.last_transition_time == T0
    assert condition.model_dump(exclude_none=True) == raw


def test_every_reason_matches_the_metav1_pattern():
    import re

    from kaito_api.conditions import CONDITION_REASON_PATTERN

    assert all(re.match(CONDITION_REASON_PATTERN, r.value) for r in ConditionReason)
