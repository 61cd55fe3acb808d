"""Switchboard: Celery orchestration of the Watcher, Analyst and Advisor agents."""

__version__ = "0.1.0"
