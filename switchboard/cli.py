"""`switchboard …`: the operator's command line.

Process commands (worker, beat, api, flower) exec the real Celery/uvicorn program with the
settings applied, so signals and exit codes are theirs; `standalone` supervises all of them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from switchboard.cli_output import command_settings as _settings
from switchboard.cli_output import errors, fail, stdout, table
from switchboard.errors import ConfigurationError
from switchboard.settings import EVAL_RATE_METRICS, QUEUE_LEVELS, Settings, get_settings

cli = typer.Typer(
    name="switchboard",
    help="Orchestrate the Watcher, Analyst and Advisor agents on Celery.",
    no_args_is_help=True,
    add_completion=False,
)
console = errors


def _version(value: bool) -> None:
    if value:
        from switchboard import __version__

        typer.echo(f"switchboard {__version__}")
        raise typer.Exit()


@cli.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit")
    ] = False,
) -> None:
    """Orchestrate the Watcher, Analyst and Advisor agents on Celery."""


def _embedded_settings(*, service: bool = False) -> Settings:
    """Settings for the embedded modes (`demo`, `standalone`): an agent whose provider is not
    chosen (SWITCHBOARD_<AGENT>_PROVIDER) uses the offline rules, explicitly and said so."""
    from switchboard.agents.llm import AGENTS

    for agent in AGENTS:
        os.environ.setdefault(f"SWITCHBOARD_{agent.upper()}_PROVIDER", "offline")
    get_settings.cache_clear()
    settings = _settings(service=service)
    chosen = ", ".join(f"{agent} {getattr(settings, f'{agent}_provider')}" for agent in AGENTS)
    console.print(f"agents: {chosen} (choose with SWITCHBOARD_<AGENT>_PROVIDER=anthropic|gemini|offline)",
                  highlight=False)  # fmt: skip
    return settings


def _exec(argv: list[str], env: dict[str, str] | None = None) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, {**os.environ, **(env or {})})


def _parse_levels(queues: str) -> list[str]:
    levels = [part.strip() for part in queues.split(",") if part.strip()]
    unknown = [level for level in levels if level not in QUEUE_LEVELS]
    if unknown or not levels:
        raise typer.BadParameter(f"queues must be a comma list of {', '.join(QUEUE_LEVELS)}; got {queues!r}")
    return levels


@cli.command()
def standalone() -> None:
    """API + worker (all queues) + beat on this machine; embedded SQLite/broker by default."""
    from switchboard.standalone import run_standalone

    raise typer.Exit(run_standalone(_embedded_settings(service=True)))


@cli.command()
def worker(
    queues: Annotated[str, typer.Option(help="Queue levels to consume, e.g. critical,high")] = ",".join(QUEUE_LEVELS),
    pool: Annotated[
        str | None, typer.Option(help="threads (default: many steps waiting on models) or prefork (CPU-bound work)")
    ] = None,
    concurrency: Annotated[
        int, typer.Option(help="Slots per process: threads, or processes for prefork; 0 = the default")
    ] = 0,
    processes: Annotated[
        int, typer.Option(help="Celery worker processes; 0 = one per CPU on threads, 1 on prefork")
    ] = 0,
    name: Annotated[
        str | None, typer.Option(help="Celery node name (default: LEVELS@host; -1, -2… per process)")
    ] = None,
) -> None:
    """Run Celery worker processes on the given queues."""
    from switchboard.agents.llm import check_configured
    from switchboard.processes import child_env, worker_commands
    from switchboard.supervisor import supervise

    settings = _settings(service=True)
    levels = _parse_levels(queues)
    if pool not in (None, "threads", "prefork"):
        raise typer.BadParameter(f"--pool must be threads or prefork; got {pool!r}")
    if processes < 0 or concurrency < 0:
        raise typer.BadParameter("--processes and --concurrency take 0 (the default) or more")
    check_configured(settings)  # a provider without its key stops the worker here, named
    commands = worker_commands(settings, levels, name=name, concurrency=concurrency or None, pool=pool,
                               processes=processes or None)  # fmt: skip
    if len(commands) == 1:
        _exec(commands[0][1])
    # warm shutdown waits for running steps; past the hard time limit, they are redelivered anyway
    raise typer.Exit(supervise(commands, child_env(settings), grace_s=settings.task_time_limit_s))


@cli.command()
def beat() -> None:
    """Run Celery beat (exactly one per deployment)."""
    from switchboard.processes import beat_argv

    settings = _settings(service=True)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _exec(beat_argv(settings))


@cli.command()
def api() -> None:
    """Serve the HTTP API with uvicorn (and print the dashboard's link)."""
    from switchboard.processes import api_command

    argv, env, url = api_command(_settings(service=True))
    typer.echo(f"Dashboard: {url}")
    _exec(argv, env)


@cli.command()
def flower() -> None:
    """Run Flower (basic auth from SWITCHBOARD_FLOWER_BASIC_AUTH, state under the data dir)."""
    from switchboard.processes import flower_command

    settings = _settings(service=True)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    argv, env = flower_command(settings)
    _exec(argv, env)


@cli.command()
def migrate(
    revision: Annotated[str, typer.Option(help="Target revision")] = "head",
    downgrade: Annotated[bool, typer.Option("--downgrade", help="Downgrade to --revision")] = False,
    plan: Annotated[bool, typer.Option("--plan", help="Print what it would do, and change nothing")] = False,
) -> None:
    """Bring the database schema to a revision (idempotent). The seed's tables, if the database
    has them already, are adopted in place: every row kept, what Switchboard needs added."""
    from switchboard.db import migrate as migrations

    settings = _settings()
    if plan:
        lines, feasible = migrations.plan(settings.database_url)
        typer.echo("\n".join(lines))
        raise typer.Exit(0 if feasible else 2)
    if downgrade:
        before, after = migrations.downgrade(settings.database_url, revision if revision != "head" else "base")
    else:
        before, after = migrations.upgrade(settings.database_url, revision)
    if before == after:
        typer.echo(f"database already at {after or 'base'}: nothing to do")
    else:
        typer.echo(f"database migrated from {before or 'base'} to {after or 'base'}")


@cli.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    beat_wait: Annotated[
        float | None, typer.Option(help="Seconds to watch for periodic jobs (default: two poll intervals)")
    ] = None,
) -> None:
    """Is it working? Database and migrations, broker, workers per queue, beat, queue depths,
    providers and which keys are set. Exit 0 ok, 1 degraded, 2 down."""
    from switchboard.status import exit_code, gather

    checks = gather(_settings(), beat_wait_s=beat_wait)
    code = exit_code(checks)
    if as_json:
        typer.echo(json.dumps({"status": ["ok", "degraded", "down"][code],
                               "checks": [vars(check) for check in checks]}))  # fmt: skip
        raise typer.Exit(code)
    out = table(None, ("check", "", "detail"))
    marks = {"ok": "[green]ok[/green]", "degraded": "[yellow]degraded[/yellow]", "down": "[red]down[/red]"}
    for check in checks:
        out.add_row(check.name, marks[check.verdict], check.detail)
    console_out = stdout()
    console_out.print(out)
    console_out.print(["everything works", "degraded: see above", "down: see above"][code], highlight=False)
    raise typer.Exit(code)


@cli.command()
def probe(
    timeout: Annotated[float, typer.Option(help="Seconds to wait per queue")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Send a probe task to each queue and report which worker ran it."""
    from switchboard.tasks.probe import probe as probe_task

    settings = _settings()
    results = {}
    failed = False
    for level in QUEUE_LEVELS:
        queue = settings.queue_name(level)
        try:
            results[level] = probe_task.apply_async(queue=queue).get(timeout=timeout)
        except Exception as error:  # a timeout means no worker consumes the queue
            results[level] = {"error": f"{type(error).__name__}: no answer within {timeout:.0f} s"}
            failed = True
    if as_json:
        typer.echo(json.dumps(results))
    else:
        for level, result in results.items():
            typer.echo(f"{level:9} {result}")
    raise typer.Exit(1 if failed else 0)


@cli.command()
def demo(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the runs")] = 180.0,
    approval: Annotated[
        bool, typer.Option("--approval", help="Add an anomaly whose high-risk action waits for your approval")
    ] = False,
) -> None:
    """Seed bundled scenarios, run them through real workers, print the runs."""
    from switchboard.demo.runner import run_demo

    raise typer.Exit(run_demo(_embedded_settings(), timeout_s=timeout, approval=approval))


runs_cli = typer.Typer(help="Recent agent runs.", invoke_without_command=True, no_args_is_help=False)
cli.add_typer(runs_cli, name="runs")


@runs_cli.callback()
def runs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many runs")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array")] = False,
) -> None:
    """The last runs (newest first): a table, or --json."""
    if ctx.invoked_subcommand is not None:
        return
    from switchboard.db.queries import recent_runs
    from switchboard.demo.runner import render_runs

    _settings(schema=True)
    rows = recent_runs(limit)
    if as_json:
        typer.echo(json.dumps(rows))
    elif not rows:
        typer.echo("no runs yet: `switchboard demo` makes some, or start the stack (`switchboard standalone`)")
    else:
        render_runs(rows, stdout(), f"Last {len(rows)} runs")


def _ms(value: object) -> str:
    return "" if value is None else f"{float(str(value)):.0f}"


def _usd(value: float | None) -> str:
    return "unknown (no price for the model)" if value is None else f"${value:.4f}"


def render_run_detail(run: dict[str, Any], console: Console) -> None:
    """One run for `switchboard runs show`: facts, steps, tool calls, approvals, actions, errors."""
    console.print(
        f"[bold]run {run['run_id']}[/bold]  {run['insight_kind'] or '-'}  status [bold]{run['status']}[/bold]"
        f"  queue {run['queue'] or '-'}  latency {_ms(run['latency_ms']) or '-'} ms"
        f"  tokens {run['tokens_in']}/{run['tokens_out']} (cache read {run['cache_read_tokens']}, "
        f"write {run['cache_write_tokens']})  cost {_usd(run['cost_usd'])}"
        f"  provider {run['provider'] or '-'}  retries {run['retries']}",
        highlight=False,
    )
    if run["trace_id"]:
        console.print(f"trace {run['trace_url'] or run['trace_id']}", highlight=False)
    if run["error"]:
        console.print(f"[red]error:[/red] {run['error']}", highlight=False)
    steps = table("Steps", ("step", "status", "attempt", "retries", "queue wait ms", "latency ms", "tokens in/out",
                            "cache read/write", "provider", "error"))  # fmt: skip
    for step in run["steps"]:
        steps.add_row(
            step["step"], step["status"], str(step["attempt"]), str(step["retries"]), _ms(step["queue_wait_ms"]),
            _ms(step["latency_ms"]), f"{step['tokens_in']}/{step['tokens_out']}",
            f"{step['cache_read_tokens']}/{step['cache_write_tokens']}", str(step["provider"] or ""),
            str(step["error"] or ""),
        )  # fmt: skip
    console.print(steps)
    calls = table("Tool calls", ("tool", "step", "status", "attempts", "latency ms", "error"))
    for call in run["tool_calls"]:
        error = f"{call['error_class']}: {call['error_message']}" if call["error_class"] else ""
        calls.add_row(
            str(call["tool"]), str(call["step"] or ""), call["status"], str(call["attempts"]),
            _ms(call["latency_ms"]), error,
        )  # fmt: skip
    console.print(calls if run["tool_calls"] else "no tool calls")
    if run["approvals"]:
        approvals = table("Approvals", ("id", "action", "risk", "status", "decided by", "summary"))
        for approval in run["approvals"]:
            approvals.add_row(
                str(approval["id"]), approval["action_type"], approval["risk"], approval["status"],
                str(approval["decided_by"] or ""), str(approval.get("summary") or ""),
            )  # fmt: skip
        console.print(approvals)
    actions = ", ".join(f"{a['action_type']} ({a['status']})" for a in run["actions"]) or "none"
    console.print(f"executed actions: {actions}", highlight=False)


@runs_cli.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="a run (its id, or any unique prefix of it)")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON")] = False,
) -> None:
    """One run: its steps (timing, usage, errors), tool calls, approvals and executed actions."""
    from switchboard.db.ids import resolve
    from switchboard.db.models import AgentRun
    from switchboard.db.queries import run_detail
    from switchboard.errors import InvalidState, NotFound

    _settings(schema=True)
    try:
        detail = run_detail(resolve(AgentRun, run_id, "run"))
    except (NotFound, InvalidState) as error:
        raise fail(str(error), 1) from None
    if detail is None:
        raise fail(f"no run {run_id}", 1)
    if as_json:
        typer.echo(json.dumps(detail, default=str))
    else:
        render_run_detail(detail, stdout())


@cli.command("dead-letters")
def dead_letters_command(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array")] = False,
) -> None:
    """Poison messages (undecodable, unknown task, no such run), newest first, with the reason."""
    from sqlalchemy import select

    from switchboard.db.models import DeadLetter
    from switchboard.db.session import session_scope

    _settings(schema=True)
    with session_scope() as session:
        rows = [
            {
                "id": row.id,
                "received_at": row.received_at.isoformat() if row.received_at else None,
                "queue": row.queue,
                "task_name": row.task_name,
                "task_id": row.task_id,
                "reason": row.reason,
            }
            for row in session.scalars(select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit))
        ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no dead letters")
        return
    out = table(f"{len(rows)} dead letters", ("received", "task", "queue", "task id", "reason"))
    for item in rows:
        out.add_row(str(item["received_at"]), str(item["task_name"] or "-"), str(item["queue"] or "-"),
                    str(item["task_id"] or "-"), str(item["reason"]))  # fmt: skip
    stdout().print(out)


@cli.command()
def failures(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many runs")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array")] = False,
) -> None:
    """Failed runs (newest first) with the step that failed and the stored reason."""
    from switchboard.replay import failed_runs

    _settings(schema=True)
    rows = failed_runs(limit)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no failed runs")
        return
    out = table(f"{len(rows)} failed runs", ("run", "insight", "failed step", "error"))
    for row in rows:
        out.add_row(str(row["run_id"]), str(row["insight_kind"] or "-"), str(row["failed_step"] or "-"),
                    str(row["error"]))  # fmt: skip
    stdout().print(out)


@cli.command()
def replay(run_id: Annotated[str, typer.Argument(help="a failed run (its id, or any unique prefix of it)")]) -> None:
    """Re-run a failed run from its failed step; finished steps and executed actions are not repeated."""
    from switchboard.db.ids import resolve
    from switchboard.db.models import AgentRun
    from switchboard.errors import InvalidState, NotFound
    from switchboard.replay import replay as replay_run

    _settings(schema=True)
    try:
        run_id = resolve(AgentRun, run_id, "run")
        step = replay_run(run_id)
    except (NotFound, InvalidState) as error:
        raise fail(str(error), 1) from None
    typer.echo(f"run {run_id} queued again from its {step} step")


eval_cli = typer.Typer(
    help="Score the agents on eval scenarios; pin the baseline; capture a run as a scenario.",
    invoke_without_command=True,
)
cli.add_typer(eval_cli, name="eval")


@eval_cli.callback(invoke_without_command=True)
def eval_command(
    ctx: typer.Context,
    suite: Annotated[str, typer.Option(help="stripe, hubspot, calls or all")] = "all",
    provider: Annotated[
        str | None, typer.Option(help="offline, anthropic or gemini for every agent (default: as configured)")
    ] = None,
    scenarios: Annotated[
        Path | None,
        typer.Option("--scenarios", help="a directory of your own scenario files, run with the shipped ones"),
    ] = None,
    batch: Annotated[
        bool | None, typer.Option("--batch/--no-batch", help="Claude turns through the Message Batches API")
    ] = None,
    only: Annotated[list[str] | None, typer.Option("--scenario", help="only this scenario (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON")] = False,
) -> None:
    """Run the eval scenarios through real workers, score them, hold them to the floors and the
    pinned baseline.

    Exit 0: every floor met, no regression; 1: a regression (named; an insight is raised);
    2: the eval could not run (a malformed scenario file, a worker that did not start, a timeout)."""
    if ctx.invoked_subcommand is not None:
        return
    from switchboard.evals.harness import EvalError, run_eval
    from switchboard.evals.scenarios import ScenarioError, load_scenarios

    if provider not in (None, "offline", "anthropic", "gemini"):
        raise fail(f"unknown provider {provider!r}: use offline, anthropic or gemini", 2)
    settings = _settings()
    try:
        load_scenarios(suite, extra=scenarios or settings.eval_scenarios_dir)  # malformed files: before any work
    except ScenarioError as error:
        raise fail(str(error), 2) from None
    from switchboard.db import migrate

    migrate.upgrade(settings.database_url)
    from switchboard.demo.runner import broker_running

    try:
        with broker_running(settings, console):
            result = run_eval(suite=suite, provider=provider, scenario_dir=scenarios, batch=batch, only=only)
    except (EvalError, ScenarioError) as error:
        raise fail(str(error), 2) from None
    if as_json:
        typer.echo(json.dumps(result.as_dict(), default=str))
        raise typer.Exit(result.exit_code)
    out = stdout()
    changes = {item["scenario"]: item for item in result.diff}
    title = f"Eval {result.eval_run_id}: {result.provider}/{result.model}, {result.seconds:.1f} s"
    outcome = table(title, ("scenario", "suite", "result", "vs baseline", "problems"))
    for item in result.results:
        verdict = "[green]pass[/green]" if item["passed"] else "[red]FAIL[/red]"
        change = changes[item["scenario"]]["change"]
        shown = {"regressed": "[red]regressed[/red]", "improved": "[green]improved[/green]"}.get(change, change)
        outcome.add_row(item["scenario"], item["suite"], verdict, shown, "; ".join(item["problems"]))
    out.print(outcome)
    for name, values in [("all", result.scores), *result.by_suite.items()]:
        rates = " ".join(f"{key}={values[key]}" for key in (*EVAL_RATE_METRICS, "forbidden_actions"))
        out.print(f"{name}: {rates} passed={values['scenarios_passed']}/{values['scenarios']}", highlight=False)
    if result.judge and result.judge.get("narratives"):
        judge = result.judge
        criteria = " ".join(f"{name}={value}" for name, value in judge["by_criterion"].items())
        out.print(f"narratives (judged by {judge['provider']}/{judge['model']}, apart from the scores above): "
                  f"{judge['narrative_score']} of criteria met over {judge['narratives']} narratives; {criteria}",
                  highlight=False)  # fmt: skip
    if result.regressions:
        against = f" (baseline {result.baseline_id})" if result.baseline_id else " (no baseline pinned)"
        out.print(f"[red]REGRESSION{against}:[/red] " + "; ".join(result.regressions), highlight=False)
    elif result.baseline_id:
        out.print(f"every floor met; no regression against baseline {result.baseline_id}", highlight=False)
    else:
        out.print("every floor met; no baseline pinned for this suite: pin one with "
                  f"`switchboard eval baseline set {result.eval_run_id}`", highlight=False)  # fmt: skip
    out.print(f"reports: {result.report_json} {result.report_html}", highlight=False)
    raise typer.Exit(result.exit_code)


@eval_cli.command("capture")
def eval_capture(
    run_id: Annotated[str, typer.Argument(help="a run (any unique prefix of its id)")],
    out: Annotated[
        Path | None, typer.Option(help="the scenario file to write (default: ./captured_KIND_ID.yaml)")
    ] = None,
) -> None:
    """Turn a real run's stored inputs into a scenario file, to complete with the right answer."""
    from switchboard.errors import InvalidState, NotFound
    from switchboard.evals.capture import capture

    _settings(schema=True)
    if out is not None and out.suffix not in (".yaml", ".yml"):
        raise fail(f"{out}: a scenario file ends in .yaml", 2)
    try:
        path, warnings = capture(run_id, out)
    except (NotFound, InvalidState) as error:
        raise fail(str(error), 1) from None
    typer.echo(f"wrote {path}: set its expect section to the right answer, then run "
               f"`switchboard eval --scenarios {path.parent}`")  # fmt: skip
    for warning in warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


baseline_cli = typer.Typer(help="The eval run each suite is compared with (moved only by a person).",
                           no_args_is_help=True)  # fmt: skip
eval_cli.add_typer(baseline_cli, name="baseline")


@baseline_cli.command("set")
def baseline_set(
    eval_run_id: Annotated[str, typer.Argument(help="a finished eval run (any unique prefix of its id)")],
    by: Annotated[str, typer.Option(help="who pins it (recorded)")] = os.environ.get("USER", "operator"),
) -> None:
    """Pin a finished eval run as its suite's baseline."""
    from switchboard.errors import InvalidState, NotFound
    from switchboard.evals.harness import pin_baseline

    _settings(schema=True)
    try:
        row = pin_baseline(eval_run_id, by=by)
    except (NotFound, InvalidState) as error:
        raise fail(str(error), 1) from None
    typer.echo(f"baseline of suite {row.suite} is now eval run {row.id} ({row.provider}/{row.model}), pinned by {by}")


@baseline_cli.command("show")
def baseline_show(
    suite: Annotated[str | None, typer.Option(help="one suite (default: every suite with a baseline)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The pinned baseline of each suite, with its scores."""
    from switchboard.db.session import session_scope
    from switchboard.evals.harness import pinned_baseline
    from switchboard.evals.scenarios import SUITES

    _settings(schema=True)
    with session_scope() as session:
        found = {name: pinned_baseline(session, name) for name in ([suite] if suite else ["all", *SUITES])}
    if as_json:
        typer.echo(json.dumps({name: None if b is None else {
            "eval_run_id": b.eval_run_id, "provider": b.provider, "model": b.model, "pinned_by": b.pinned_by,
            "pinned_at": b.pinned_at, "scores": b.scores} for name, b in found.items()}, default=str))  # fmt: skip
        return
    for name, baseline in found.items():
        if baseline is None:
            typer.echo(f"{name}: no baseline pinned")
            continue
        rates = " ".join(f"{key}={baseline.scores.get(key)}" for key in (*EVAL_RATE_METRICS, "forbidden_actions"))
        typer.echo(f"{name}: eval run {baseline.eval_run_id} ({baseline.provider}/{baseline.model}), pinned by "
                   f"{baseline.pinned_by} at {baseline.pinned_at:%Y-%m-%d %H:%M} UTC: {rates}")  # fmt: skip


approvals_cli = typer.Typer(help="High-risk actions waiting for a decision.", no_args_is_help=True)
cli.add_typer(approvals_cli, name="approvals")


@approvals_cli.command("list")
def approvals_list(
    status: Annotated[str, typer.Option(help="pending, approved, rejected, executed or all")] = "pending",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List approvals (pending by default)."""
    from dataclasses import asdict

    from switchboard.approvals import list_approvals

    _settings(schema=True)
    rows = list_approvals(None if status == "all" else status)
    if as_json:
        typer.echo(json.dumps([asdict(row) for row in rows], default=str))
        return
    if not rows:
        typer.echo(f"no {status} approvals")
        return
    out = table(f"{len(rows)} {status} approvals", ("id", "status", "risk", "action", "run", "created", "what and why"))
    for row in rows:
        out.add_row(str(row.id), row.status, row.risk, row.action_type, row.run_id,
                    f"{row.created_at:%Y-%m-%d %H:%M}", row.summary)  # fmt: skip
    stdout().print(out)


@approvals_cli.command("approve")
def approvals_approve(approval_id: int) -> None:
    """Approve an action; a worker executes it (once)."""
    from switchboard.errors import InvalidState, NotFound
    from switchboard.tasks.actions import approve

    _settings(schema=True)
    try:
        task_id = approve(approval_id)
    except (NotFound, InvalidState) as error:
        raise fail(str(error), 1) from None
    typer.echo(f"approval {approval_id} approved; execution queued (task {task_id})")


@approvals_cli.command("reject")
def approvals_reject(
    approval_id: int, reason: Annotated[str | None, typer.Option(help="Why, for the record")] = None
) -> None:
    """Reject an action: it will never run."""
    from switchboard.approvals import reject
    from switchboard.errors import InvalidState, NotFound

    _settings(schema=True)
    try:
        reject(approval_id, reason=reason)
    except (NotFound, InvalidState) as error:
        raise fail(str(error), 1) from None
    typer.echo(f"approval {approval_id} rejected")


from switchboard.cli_backfill import backfill as backfill_command  # noqa: E402  (its own module)
from switchboard.cli_insights import insights_cli  # noqa: E402  (its own module)

cli.add_typer(insights_cli, name="insights")

cli.command("backfill")(backfill_command)


def main() -> None:
    """Console-script entry point: configuration errors become a message and exit code 2."""
    try:
        cli()
    except ConfigurationError as error:
        console.print(f"[red]switchboard:[/red] {error}", highlight=False)
        sys.exit(2)
