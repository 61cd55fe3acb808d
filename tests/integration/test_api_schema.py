"""schemathesis's own CLI with every check (`--checks all`) over every operation of a real API
server (uvicorn over TCP, the test Postgres, Redis and an in-process worker): examples, coverage,
fuzzing and stateful phases, authenticated with the key each operation's scope needs, following
the document's links (a listed run, approval, eval run or backfill job feeds the routes that take
its id) over seeded data. Webhook requests are signed by a hook (`tests/support/schemathesis_hooks.py`)
so valid generated events reach the store. 0 failures."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from switchboard.api.app import create_app
from switchboard.db.backfill_jobs import create_job
from switchboard.db.models import Approval, EvalResult, EvalRun
from switchboard.db.session import session_scope
from switchboard.settings import get_settings
from tests.support.api import serve
from tests.support.observability import run_demo_and_approval_scenario
from tests.support.runs import empty_tables, failed_run

OPERATOR_KEY = "sbo_" + uuid.uuid4().hex
INGEST_KEY = "sbk_" + uuid.uuid4().hex
SECRETS = {
    "SWITCHBOARD_STRIPE_WEBHOOK_SECRET": "whsec_" + uuid.uuid4().hex,
    "SWITCHBOARD_HUBSPOT_CLIENT_SECRET": uuid.uuid4().hex,
}
REPO = Path(__file__).resolve().parents[2]

CONFIG = f"""
# PostgreSQL cannot store NUL in text or jsonb, so the API refuses it with a 422 wherever it
# appears (test_ingest_api covers that); generated strings leave it out, as schemathesis provides for.
generation.allow-x00 = false

[[operations]]
include-path-regex = "^/api/(events|backfill)"
headers = {{ Authorization = "Bearer {INGEST_KEY}" }}

[[operations]]
include-path-regex = "^/(api/(runs|records|approvals|insights|evals|dashboard/(charts|queues))|metrics)"
headers = {{ Authorization = "Bearer {OPERATOR_KEY}" }}

# A backfill window must be in the past and not empty: JSON Schema cannot say "since before
# until, both before now", so a schema-valid window may get the documented 422 with the reason.
[[operations]]
include-path-regex = "^/api/backfill$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]
"""


@pytest.fixture()
def api(database_url: str, celery_worker: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    empty_tables(database_url)
    for name, value in {"SWITCHBOARD_OPERATOR_KEYS": OPERATOR_KEY, "SWITCHBOARD_INGEST_KEYS": INGEST_KEY,
                        **SECRETS}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    _seed()
    with serve(create_app()) as url:
        yield url
    monkeypatch.undo()
    get_settings.cache_clear()
    empty_tables(database_url)


def _seed() -> None:
    """Runs (one awaiting approval, one failed), 41 pending approvals, an eval run, a backfill job."""
    run_demo_and_approval_scenario()
    failed_run()
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        pending = session.scalars(select(Approval).where(Approval.status == "pending")).first()
        assert pending is not None, "the approval scenario left no pending approval"
        for n in range(40):  # enough that approving and rejecting in the stateful phase does not run out
            key = f"{pending.action_key}:seed{n}"
            session.add(Approval(run_id=pending.run_id, action_key=key, action_type=pending.action_type,
                                 action=pending.action, risk=pending.risk))  # fmt: skip
        run = EvalRun(suite="all", provider="offline", status="passed", trigger="manual", started_at=now,
                      finished_at=now, scores={"by_suite": {}})  # fmt: skip
        session.add(run)
        session.flush()
        session.add(EvalResult(eval_run_id=run.id, scenario="seeded", category="stripe", passed=True, scores={}))
    create_job("stripe", now - dt.timedelta(days=2), now - dt.timedelta(days=1), trigger="api")


def test_every_operation_conforms_to_the_openapi_contract(api: str, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    env = {**os.environ, **SECRETS, "SCHEMATHESIS_HOOKS": "tests.support.schemathesis_hooks",
           "PYTHONPATH": str(REPO)}  # fmt: skip
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config), "run", f"{api}/openapi.json",
        "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", "40",
        # one worker: two threads once crashed hypothesis's lambda description in a fresh venv
        "--workers", "1", "--seed", "20261203", "--no-color",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    summary = output[output.rfind("SUMMARY") :] if "SUMMARY" in output else output[-3000:]
    (tmp_path / "schemathesis.out").write_text(output)
    warnings = output[output.find("WARNINGS") : output.find("SUMMARY")] if "WARNINGS" in output else ""
    print(warnings + summary)
    assert done.returncode == 0, output[-12000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", summary)
    assert selected and selected.group(1) == selected.group(2) and int(selected.group(1)) >= 20, summary
    assert "✅ Stateful" in summary and "Authentication failed" not in summary, warnings + summary
