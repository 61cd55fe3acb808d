"""The Celery app's reliability defaults and routes are what the README promises."""

from __future__ import annotations

from switchboard.celery_app import ROUTES_BY_LEVEL, app, build_config
from switchboard.settings import Settings, get_settings


def test_reliability_defaults() -> None:
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json" and conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert conf.worker_send_task_events is True and conf.task_send_sent_event is True
    assert conf.broker_connection_retry_on_startup is True
    assert conf.task_default_priority is not None


def test_visibility_timeout_exceeds_the_longest_task() -> None:
    settings = get_settings()
    options = app.conf.broker_transport_options
    assert options["visibility_timeout"] == settings.visibility_timeout_s
    assert options["visibility_timeout"] > settings.task_time_limit_s
    assert options["queue_order_strategy"] == "priority"


def test_four_queues_with_the_session_prefix() -> None:
    settings = get_settings()
    names = [queue.name for queue in app.conf.task_queues]
    assert names == settings.all_queues
    assert all(name.startswith(settings.queue_prefix) for name in names)
    assert app.conf.task_default_queue == settings.queue_name("default")


def test_routes_send_each_task_family_to_its_queue() -> None:
    settings = get_settings()
    router = app.amqp.router
    for pattern, level in ROUTES_BY_LEVEL.items():
        task_name = pattern.replace("*", "some_task")
        route = router.route({}, task_name)
        assert route["queue"].name == settings.queue_name(level), task_name
    assert router.route({}, "switchboard.unrouted")["queue"].name == settings.queue_name("default")


def test_build_config_is_pure() -> None:
    config = build_config(Settings(queue_prefix="x.", broker_url="redis://h:1/0", database_url="sqlite:///x"))
    assert [queue.name for queue in config["task_queues"]] == ["x.critical", "x.high", "x.default", "x.low"]
    assert config["broker_url"] == "redis://h:1/0"


def test_the_dispatcher_goes_ahead_of_every_agent_step() -> None:
    from kombu.transport.redis import Channel

    from switchboard.celery_app import DISPATCHER_PRIORITY
    from switchboard.scheduling import PRIORITY_BY_LEVEL

    settings = get_settings()
    route = app.amqp.router.route({}, "switchboard.tasks.orchestrator.poll_insights")
    assert route["queue"].name == settings.queue_name("critical")
    assert route["priority"] == DISPATCHER_PRIORITY
    # kombu rounds a message priority down to its step: the dispatcher and critical runs
    # must land in different Redis lists, the dispatcher's drained first.
    channel = Channel.__new__(Channel)
    channel.priority_steps = app.conf.broker_transport_options["priority_steps"]
    buckets = [channel.priority(p) for p in (DISPATCHER_PRIORITY, *PRIORITY_BY_LEVEL.values())]
    assert buckets == sorted(set(buckets)), buckets
