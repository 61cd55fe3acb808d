"""The nightly eval as a beat job (crontab from settings, 02:00 UTC by default)."""

from __future__ import annotations

from typing import Any

from switchboard.celery_app import app
from switchboard.settings import get_settings


@app.task(name="switchboard.tasks.evals.nightly", acks_late=True)
def nightly(suite: str = "all") -> dict[str, Any]:
    """Run the eval suite with the nightly provider; returns its scores and regressions."""
    from switchboard.evals.harness import run_eval

    settings = get_settings()
    result = run_eval(suite=suite, provider=settings.eval_provider or None, trigger="nightly")
    return {"eval_run_id": result.eval_run_id, "scores": result.scores, "regressions": result.regressions}
