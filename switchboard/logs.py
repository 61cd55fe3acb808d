"""Logging: one JSON object per line (or a plain line with SWITCHBOARD_LOG_FORMAT=text) that
carries the run id, the step, the Celery task id and the queue of the task being run.

The task fields live in context variables set by Celery's `task_prerun` and cleared by
`task_postrun`, so every record logged while a task runs — ours, Celery's "Task … succeeded",
a library's — carries them, in prefork children and in thread-pool workers alike (each thread
has its own context). Outside a task they are null. Every line passes through the secret
scrubber (`redaction.scrub`) on its way out.

In workers, Celery sets its handlers up and then signals `after_setup_logger` /
`after_setup_task_logger`; we restyle those handlers instead of replacing them, so Celery's
`--logfile` and redirection keep working (`worker_hijack_root_logger` stays off).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
from typing import Any

from switchboard.pipeline import step_of_task
from switchboard.settings import Settings, get_settings

CONTEXT_FIELDS = ("run_id", "step", "task_id", "queue")
_context: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(f"switchboard_log_{name}", default=None) for name in CONTEXT_FIELDS
}
_HANDLER_MARK = "_switchboard_handler"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# attributes every LogRecord has; anything else a caller passed in `extra=` goes into the JSON
_RECORD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def bind_task_context(**values: str | None) -> None:
    """Set the task fields (run_id, step, task_id, queue) for records logged from here on."""
    for name, value in values.items():
        _context[name].set(value)


def clear_task_context() -> None:
    for var in _context.values():
        var.set(None)


def task_context() -> dict[str, str | None]:
    return {name: var.get() for name, var in _context.items()}


class TaskContextFilter(logging.Filter):
    """Puts the current task fields on every record that passes through a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in task_context().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        if getattr(record, "trace_id", None) is None:  # the span being recorded, when tracing is on
            from switchboard.tracing import ids

            record.trace_id, record.span_id = ids() or (None, None)
        # Celery's own lines about a message it has not started yet ("Task … received") carry
        # the message in `data`: its task id is known even outside the task
        data = getattr(record, "data", None)
        if getattr(record, "task_id", None) is None and isinstance(data, dict) and data.get("id"):
            record.task_id = str(data["id"])
        # An expected failure ("raised expected", at INFO) is one line: Celery still hands its
        # traceback along in `data`, which says nothing the reason does not.
        if isinstance(data, dict) and "traceback" in data and record.levelno < logging.ERROR:
            record.data = {key: value for key, value in data.items() if key != "traceback"}
        return True


class QuietPeriodic(logging.Filter):
    """Demotes the INFO chatter about frequent periodic jobs (`beat_schedule.QUIET_TASKS`) to
    DEBUG: kept when the level is DEBUG, dropped otherwise."""

    LOGGERS = frozenset({"celery.beat", "celery.worker.strategy", "celery.app.trace", "switchboard.tasks"})

    def __init__(self) -> None:
        super().__init__()
        from switchboard.beat_schedule import QUIET_TASKS

        self.tasks = QUIET_TASKS

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or record.name not in self.LOGGERS:
            return True
        message = record.getMessage()
        if not any(name in message for name in self.tasks):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def _scrub(text: str) -> str:
    from switchboard.redaction import scrub

    try:
        return scrub(text)
    except Exception:  # settings unreadable: still mask credential-shaped tokens
        from switchboard.redaction import REDACTED, SECRET_SHAPES

        return SECRET_SHAPES.sub(REDACTED, text)


# Extras that only decorate a terminal (uvicorn's ANSI-coloured copy of the message).
_NOISE = frozenset({"color_message"})


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the task fields, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*CONTEXT_FIELDS, "trace_id", "span_id"):
            entry[name] = getattr(record, name, None)
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in entry and not key.startswith("_") and key not in _NOISE:
                entry[key] = value if isinstance(value, str | int | float | bool | type(None)) else repr(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return _scrub(json.dumps(entry, default=str))


class TextFormatter(logging.Formatter):
    """The plain line, with the task fields appended when a task is running; scrubbed too."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS if getattr(record, name, None))
        return _scrub(f"{line} [{fields}]" if fields else line)


def make_formatter(settings: Settings) -> logging.Formatter:
    return JsonFormatter() if settings.log_format == "json" else TextFormatter()


def style_handler(handler: logging.Handler, settings: Settings) -> None:
    """Give a handler our formatter and the task-context filter (once)."""
    handler.setFormatter(make_formatter(settings))
    if not any(isinstance(f, TaskContextFilter) for f in handler.filters):
        handler.addFilter(TaskContextFilter())
    if not any(isinstance(f, QuietPeriodic) for f in handler.filters):
        handler.addFilter(QuietPeriodic())


def configure_logging(settings: Settings, *, command: bool = False) -> None:
    """Our handler on the root logger (stderr), at the configured level; idempotent. For a
    `command` (which prints human text: demo, eval, runs, …) only warnings and errors are
    logged — services (worker, beat, api, standalone) log at the configured level."""
    root = logging.getLogger()
    level = logging.getLevelName(settings.log_level)
    root.setLevel(max(level, logging.WARNING) if command and isinstance(level, int) else settings.log_level)
    handler = next((h for h in root.handlers if getattr(h, _HANDLER_MARK, False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    style_handler(handler, settings)


def _restyle(logger: logging.Logger | None) -> None:
    if logger is None:
        return
    settings = get_settings()
    for handler in logger.handlers:
        # pytest's capture handlers (in-process test workers) keep their own format
        if not type(handler).__module__.startswith("_pytest"):
            style_handler(handler, settings)


def _after_setup_logger(logger: logging.Logger | None = None, **_: Any) -> None:
    _restyle(logger)


def _on_worker_init(**_: Any) -> None:
    # Sent before Celery's own start-up checks (e.g. its warning about running as root) and
    # before it sets logging up: our handler goes on the root logger now, Python warnings are
    # routed through logging, and Celery — seeing a configured root — adds no second handler.
    logging.captureWarnings(True)
    configure_logging(get_settings())


def _task_prerun(task_id: str | None = None, task: Any = None, kwargs: Any = None, **_: Any) -> None:
    request = getattr(task, "request", None)
    delivery = getattr(request, "delivery_info", None) or {}
    step = getattr(step_of_task(getattr(task, "name", None)), "name", None)
    run_id = (kwargs or {}).get("run_id")
    bind_task_context(
        run_id=str(run_id) if run_id else None,
        step=step,
        task_id=task_id,
        queue=delivery.get("routing_key") or delivery.get("queue"),
    )


def _task_postrun(**_: Any) -> None:
    clear_task_context()


def connect_worker_logging() -> None:
    """Celery signals: restyle Celery's worker handlers, bind the task fields around each task."""
    from celery import signals

    signals.celeryd_init.connect(_on_worker_init, weak=False)
    signals.after_setup_logger.connect(_after_setup_logger, weak=False)
    signals.after_setup_task_logger.connect(_after_setup_logger, weak=False)
    signals.task_prerun.connect(_task_prerun, weak=False)
    signals.task_postrun.connect(_task_postrun, weak=False)
