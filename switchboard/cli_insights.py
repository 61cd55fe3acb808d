"""`switchboard insights`: the anomalies to work — list them, acknowledge, snooze, resolve."""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Annotated, Any

import typer

from switchboard.cli_output import command_settings, fail, stdout, table

insights_cli = typer.Typer(
    help="Insights (anomaly episodes) to work: list, acknowledge, snooze, resolve.",
    invoke_without_command=True,
    no_args_is_help=False,
)
OPERATOR = os.environ.get("USER", "operator")


def _left(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    sign, rest = ("-" if seconds < 0 else ""), abs(seconds)
    if rest >= 86400:
        return f"{sign}{rest // 86400}d {rest % 86400 // 3600}h"
    if rest >= 3600:
        return f"{sign}{rest // 3600}h {rest % 3600 // 60}m"
    return f"{sign}{rest // 60}m"


def _triage(item: dict[str, Any]) -> str:
    if item["quarantine_reason"]:
        return f"quarantined: {item['quarantine_reason']}"
    if item["resolved_at"]:
        return f"resolved by {item['resolved_by']}"
    parts = []
    if item["snoozed"]:
        parts.append(f"snoozed until {item['snoozed_until'][:16].replace('T', ' ')}")
    if item["acknowledged_by"]:
        parts.append(f"ack {item['acknowledged_by']}")
    return ", ".join(parts) or "-"


@insights_cli.callback()
def insights(
    ctx: typer.Context,
    status: Annotated[
        str, typer.Option(help="open, resolved, quarantined, all, or one status (new, running, done, …)")
    ] = "open",
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array")] = False,
) -> None:
    """Open insights, most severe and most urgent first: severity, SLA time left, occurrences,
    latest run, who acknowledged or snoozed it."""
    if ctx.invoked_subcommand is not None:
        return
    from switchboard.db.queries import INSIGHT_FILTERS
    from switchboard.db.queries import insights as list_insights

    if status not in INSIGHT_FILTERS:
        raise fail(f"unknown status {status!r}: use one of {', '.join(INSIGHT_FILTERS)}", 2)
    command_settings(schema=True)
    rows = list_insights(status, limit)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo(f"no {status} insights")
        return
    out = table(f"{len(rows)} {status} insights", ("id", "severity", "kind", "entity", "status", "SLA left",
                                                   "seen", "latest run", "triage", "title", "note"))  # fmt: skip
    for item in rows:
        run = f"{item['run_id']} ({item['run_status']})" if item["run_id"] else "-"
        out.add_row(str(item["id"]), item["severity"], item["kind"], item["entity"], item["status"],
                    _left(item["sla_left_s"]), str(item['occurrences']), run, _triage(item), item["title"],
                    item["note"] or "")  # fmt: skip
    stdout().print(out)


def _act(action: str, insight_id: int, **kwargs: Any) -> None:
    from switchboard import insights as work
    from switchboard.errors import InvalidState, NotFound

    command_settings(schema=True)
    try:
        item = getattr(work, action)(insight_id, by=OPERATOR, **kwargs)
    except (NotFound, InvalidState) as error:
        raise fail(str(error), 1) from None
    typer.echo(f"insight {item['id']} ({item['kind']}, {item['entity']}): {_triage(item)}")


@insights_cli.command("ack")
def acknowledge(insight_id: int, note: Annotated[str | None, typer.Option(help="For the record")] = None) -> None:
    """Acknowledge an insight: you have it (recorded; run rather than expired past its SLA)."""
    _act("acknowledge", insight_id, note=note)


@insights_cli.command("snooze")
def snooze(
    insight_id: int,
    until: Annotated[str, typer.Option(help="30m, 2h, 1d, 1w, or an ISO time (UTC)")],
    note: Annotated[str | None, typer.Option(help="Why, for the record")] = None,
) -> None:
    """Snooze an insight: no run for it before then, however often it recurs."""
    from switchboard.insights import parse_until

    try:
        when = parse_until(until, dt.datetime.now(dt.UTC))
    except ValueError as error:
        raise fail(f"--until {error}", 2) from None
    _act("snooze", insight_id, until=when, note=note)


@insights_cli.command("resolve")
def resolve(insight_id: int, note: Annotated[str | None, typer.Option(help="What was done about it")] = None) -> None:
    """Resolve an insight: its episode ends (no run for it); the next occurrence is a new insight."""
    _act("resolve", insight_id, note=note)
