"""Log formats: JSON lines with the task fields, the plain text line, secrets masked in both."""

from __future__ import annotations

import json
import logging

from switchboard.logs import JsonFormatter, TaskContextFilter, TextFormatter, bind_task_context, clear_task_context

SECRET = "sk_live_" + "a1b2c3d4e5f6g7h8"


def _record(message: str, *args: object) -> logging.LogRecord:
    record = logging.LogRecord("switchboard.test", logging.WARNING, __file__, 1, message, args, None)
    assert TaskContextFilter().filter(record)
    return record


def test_json_line_carries_task_fields_extras_and_no_secret() -> None:
    bind_task_context(run_id="r1", step="analyst", task_id="t1", queue="high")
    try:
        record = _record("calling stripe with %s", SECRET)
        record.attempt = 2
        line = JsonFormatter().format(record)
    finally:
        clear_task_context()
    entry = json.loads(line)
    assert (entry["run_id"], entry["step"], entry["task_id"], entry["queue"]) == ("r1", "analyst", "t1", "high")
    assert entry["message"] == "calling stripe with [redacted]" and entry["attempt"] == 2
    assert entry["level"] == "WARNING" and entry["logger"] == "switchboard.test" and SECRET not in line


def test_outside_a_task_the_fields_are_null_and_text_format_is_a_plain_line() -> None:
    entry = json.loads(JsonFormatter().format(_record("idle")))
    assert [entry[name] for name in ("run_id", "step", "task_id", "queue")] == [None, None, None, None]
    plain = TextFormatter().format(_record("token %s", SECRET))
    assert plain.endswith("WARNING switchboard.test: token [redacted]") and "{" not in plain
    bind_task_context(run_id="r2", step="watcher", task_id="t2", queue="critical")
    try:
        assert TextFormatter().format(_record("x")).endswith(" [run_id=r2 step=watcher task_id=t2 queue=critical]")
    finally:
        clear_task_context()
