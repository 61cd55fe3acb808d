"""`switchboard eval capture RUN_ID`: a real run's stored inputs as a scenario file, for a person
to complete with the right answer.

The file holds the records the run's alert names — its entity, the related entities and the
evidence — with every time made relative to the run (`at: -125m`, `{now-2d}` in the data), the
alert it raised as the expectation, and the run's own answer (root cause, actions) prefilled for
the person to confirm or correct. Detectors that weigh a trend (a spike against weeks of
history) see only these records: the command runs the detectors over them and says when the
alert does not come back, so the person can add a `series`.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select, tuple_

from switchboard.agents.detectors import Facts, Record, run_detectors
from switchboard.db.ids import resolve
from switchboard.db.models import AgentRun, AgentStep, SourceRecord
from switchboard.db.session import session_scope
from switchboard.errors import InvalidState
from switchboard.evals.scenarios import ScenarioError, load_scenario_file

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
_UNIX_S = (1_000_000_000, 4_000_000_000)  # 2001 .. 2096, in seconds


def _minutes(delta: dt.timedelta) -> str:
    return f"{round(delta.total_seconds() / 60):+d}m"


def _relative(value: Any, anchor: dt.datetime) -> Any:
    """Absolute times in a record's data as templates relative to the run (see scenarios.py)."""
    if isinstance(value, dict):
        return {key: _relative(item, anchor) for key, item in value.items()}
    if isinstance(value, list):
        return [_relative(item, anchor) for item in value]
    if isinstance(value, str) and _ISO.match(value):
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
        return "{now" + _minutes(moment - anchor) + "}"
    if isinstance(value, int) and not isinstance(value, bool) and _UNIX_S[0] <= value <= _UNIX_S[1]:
        return "{ts:now" + _minutes(dt.datetime.fromtimestamp(value, dt.UTC) - anchor) + "}"
    return value


def capture(run_id: str, out: Path | None = None) -> tuple[Path, list[str]]:
    """Write the scenario file; returns its path and the warnings for the person completing it."""
    with session_scope() as session:
        run = session.get(AgentRun, resolve(AgentRun, run_id, "run", session))
        assert run is not None
        alert = (run.input or {}).get("alert")
        if not isinstance(alert, dict) or "entity" not in alert:
            raise InvalidState(f"run {run.id} holds no alert to capture")
        steps = {s.step: s for s in session.scalars(select(AgentStep).where(AgentStep.run_id == run.id))}
        anchor = run.enqueued_at or run.created_at
        entity = alert["entity"]
        refs = [entity, *(alert.get("related") or [])]
        keys = {(str(r["source"]), str(r["type"]), str(r["id"])) for r in refs}
        evidence = [str(item) for item in alert.get("evidence_ids") or []]
        key = tuple_(SourceRecord.source, SourceRecord.object_type, SourceRecord.object_id)
        rows = list(session.scalars(select(SourceRecord).where(key.in_(list(keys)))))
        if evidence:
            rows += session.scalars(select(SourceRecord).where(SourceRecord.object_id.in_(evidence),
                                                               SourceRecord.source == alert["source"]))  # fmt: skip
        records = {(r.source, r.object_type, r.object_id): r for r in rows}
        analysis = (steps["analyst"].output or {}) if "analyst" in steps else {}
        plan = (steps["advisor"].output or {}) if "advisor" in steps else {}
    name = out.stem if out is not None else f"captured_{alert['kind']}_{run.id[:8]}"
    path = out or Path(f"{name}.yaml")
    kind = alert["kind"]
    spec: dict[str, Any] = {
        "name": name,
        "suite": alert["source"],
        "description": f"Captured from run {run.id}: {alert.get('title')}",
        "records": [
            {"source": r.source, "type": r.object_type, "id": r.object_id, "at": _minutes(r.occurred_at - anchor),
             "data": _relative({k: v for k, v in (r.data or {}).items() if k != "id"}, anchor)}
            for r in sorted(records.values(), key=lambda r: (r.source, r.object_type, r.object_id))
        ],
        "expect": {
            "alerts": [{"kind": kind, "entity": str(entity["id"]), "severity": alert.get("severity")}],
            "root_causes": {kind: analysis.get("root_cause") or "unknown"},
            "actions": {kind: sorted({a.get("type") for a in plan.get("actions") or []}) or ["no_action"]},
            "evidence": {kind: sorted(set(evidence) & {r.object_id for r in records.values()})[:5]},
        },
    }  # fmt: skip
    header = (
        f"# Captured by `switchboard eval capture {run.id}`.\n"
        "# expect.root_causes, expect.actions and expect.evidence hold what the run answered: make them the\n"
        "# RIGHT answer before this scenario counts (add action_content and forbidden_actions as needed).\n"
    )
    path.write_text(header + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    warnings = []
    try:
        scenario = load_scenario_file(path)
    except ScenarioError as error:  # a record the format cannot hold: say so, keep the file to fix
        return path, [f"the file does not load as a scenario yet: {error}"]
    now = dt.datetime.now(dt.UTC)
    built = [Record(r.source, r.object_type, r.object_id, r.occurred_at, r.data) for r in scenario.build(now)]
    found = {(a.kind, a.entity.id) for a in run_detectors(Facts(built), now)}
    if (kind, str(entity["id"])) not in found:
        warnings.append(f"the captured records alone do not raise {kind} for {entity['id']} (the detector weighs "
                        "history the run's alert does not name): add a `series` or more records")  # fmt: skip
    return path, warnings
