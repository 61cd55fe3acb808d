"""Queue placement by severity and SLA slack: escalation before the deadline, expiry after."""

from __future__ import annotations

import datetime as dt

import pytest

from switchboard.scheduling import place
from switchboard.settings import Settings

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
SETTINGS = Settings(database_url="sqlite://", broker_url="redis://x:1/0")


def _placed(severity: str, budget_h: float, left_h: float, settings: Settings = SETTINGS) -> tuple[str, str, int]:
    created = NOW - dt.timedelta(hours=budget_h - left_h)
    deadline = NOW + dt.timedelta(hours=left_h)
    placement = place(severity, deadline, created, NOW, settings)
    return placement.action, placement.level, placement.priority


@pytest.mark.parametrize(
    ("severity", "expected_level"), [("critical", "critical"), ("high", "high"), ("medium", "default"), ("low", "low")]
)
def test_fresh_work_goes_to_its_severity_queue(severity: str, expected_level: str) -> None:
    assert _placed(severity, 4, 3.9)[:2] == ("dispatch", expected_level)


def test_aging_routine_work_is_escalated_before_its_deadline() -> None:
    assert _placed("medium", 4, 2.5) == ("dispatch", "default", 5)  # 62% of the SLA left
    assert _placed("medium", 4, 1.5) == ("dispatch", "high", 3)  # 37% left: one level up
    assert _placed("medium", 4, 0.5) == ("dispatch", "critical", 1)  # 12% left: critical
    assert _placed("low", 24, 10) == ("dispatch", "default", 5)


def test_routine_work_past_its_deadline_expires_or_escalates_per_settings() -> None:
    assert _placed("low", 24, -1)[0] == "expire"
    assert _placed("medium", 4, -0.1)[0] == "expire"
    escalate = Settings(database_url="sqlite://", broker_url="redis://x:1/0", expired_routine_policy="escalate")
    assert _placed("low", 24, -1, escalate) == ("dispatch", "critical", 1)


def test_urgent_work_past_its_deadline_is_escalated_never_expired() -> None:
    assert _placed("high", 1, -0.5) == ("dispatch", "critical", 1)
    assert _placed("critical", 0.25, -0.1) == ("dispatch", "critical", 1)


def test_reason_says_why() -> None:
    created = NOW - dt.timedelta(hours=3)
    placement = place("medium", NOW + dt.timedelta(hours=1), created, NOW, SETTINGS)
    assert placement.reason == "medium: only 25% of SLA left, escalated to high"
