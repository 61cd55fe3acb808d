"""Where a run goes: pure policy mapping (severity, SLA deadline, age) → queue and priority.

Work that ages toward its deadline is escalated to a more urgent queue before the deadline
passes; routine work already past its deadline is expired (or escalated, per settings).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from switchboard.settings import Settings
from switchboard.utc import as_utc

LEVEL_BY_SEVERITY = {"critical": "critical", "high": "high", "medium": "default", "low": "low"}
LEVELS = ("critical", "high", "default", "low")
# Redis priority within a queue: 0 is the most urgent and reserved for the orchestrator's own
# dispatch pass (celery_app.DISPATCHER_PRIORITY), so runs start at 1.
PRIORITY_BY_LEVEL = {"critical": 1, "high": 3, "default": 5, "low": 7}
ROUTINE = ("medium", "low")


@dataclass(frozen=True)
class Placement:
    """The orchestrator's decision for one insight."""

    action: Literal["dispatch", "expire"]
    level: str
    priority: int
    reason: str


def place(
    severity: str, sla_deadline: dt.datetime | None, created_at: dt.datetime, now: dt.datetime, settings: Settings
) -> Placement:
    """Queue level and priority for an insight of ``severity`` created at ``created_at``."""
    level = LEVEL_BY_SEVERITY[severity]
    if sla_deadline is None:
        return Placement("dispatch", level, PRIORITY_BY_LEVEL[level], f"{severity}: no SLA")
    deadline, created = as_utc(sla_deadline), as_utc(created_at)
    slack_s = (deadline - now).total_seconds()
    budget_s = max(1.0, (deadline - created).total_seconds())
    if slack_s <= 0:
        if severity in ROUTINE and settings.expired_routine_policy == "expire":
            return Placement(
                "expire", level, PRIORITY_BY_LEVEL[level], f"{severity}: SLA deadline passed {-slack_s:.0f} s ago"
            )
        return Placement(
            "dispatch",
            "critical",
            PRIORITY_BY_LEVEL["critical"],
            f"{severity}: past SLA deadline by {-slack_s:.0f} s, escalated",
        )
    left = slack_s / budget_s
    if left <= settings.escalate_urgent_fraction:
        target = "critical"
    elif left <= settings.escalate_fraction:
        target = LEVELS[max(0, LEVELS.index(level) - 1)]
    else:
        return Placement("dispatch", level, PRIORITY_BY_LEVEL[level], f"{severity}: {left:.0%} of SLA left")
    if LEVELS.index(target) < LEVELS.index(level):
        return Placement(
            "dispatch",
            target,
            PRIORITY_BY_LEVEL[target],
            f"{severity}: only {left:.0%} of SLA left, escalated to {target}",
        )
    return Placement("dispatch", level, PRIORITY_BY_LEVEL[level], f"{severity}: {left:.0%} of SLA left")
