"""The public surface of ``mmate`` is curated: every name in ``__all__`` exists and belongs to
mmate."""

from __future__ import annotations

import mmate

EXPECTED = {
    "__version__",
    # runtime
    "Client",
    "ClientSettings",
    "ClientOptions",
    "App",
    "ScheduleEntry",
    "ConnectionEvent",
    "ReconnectPolicy",
    "Serving",
    "Batch",
    "Publication",
    "MessageContext",
    "HandlerBase",
    "HandlerRegistry",
    "HandlerFunc",
    "HandlerFactory",
    "MessageHandler",
    "Publisher",
    "PublishTransport",
    "PublishOptions",
    "Model",
    "Base64Bytes",
    "JsonDecimal",
    # topology (used by generated code)
    "BindingDef",
    "ExchangeDef",
    "HandlerRoute",
    "HeaderValue",
    "MessageDef",
    "PublishRoute",
    "QueueDef",
    "RetryPolicy",
    "ServiceTopology",
    # interceptors (mmate.metrics and mmate.tracing are built on them)
    "Interceptor",
    "PublishInfo",
    "PublishNext",
    "HandleNext",
    "Outcome",
    # health
    "CheckResult",
    "HealthReport",
    "HealthServer",
    "QueueStats",
    "check_health",
    "serve_health",
    # errors
    "MmateError",
    "BrokerConnectionError",
    "TopologyError",
    "PreconditionFailed",
    "EntityNotFound",
    "AccessRefused",
    "ResourceLocked",
    "ChannelClosed",
    "PublishError",
    "UnroutableError",
    "NackError",
    "PublishTimeout",
    "ChannelTimeout",
    "BatchPublishError",
    "BatchFailure",
    "RequestTimeout",
    "RemoteError",
    "ReplyError",
    "DecodeError",
    "FeatureNotAvailable",
    "MessageTooLarge",
    "PermanentError",
    "TransientError",
    # failure handling
    "RetryAfter",
    "new_permanent_error",
    "new_transient_error",
    "HandlerBreakerOptions",
    "CircuitBreaker",
    "BreakerState",
    # transactions and the publish breaker
    "Transaction",
    "TransactionError",
    "PublishBreakerOptions",
    "CircuitOpenError",
    # delays and schedules
    "PublishMethod",
    "Scheduler",
    "CronError",
}


ALIASES = {
    "Base64Bytes",
    "JsonDecimal",
    "HeaderValue",
    "PublishNext",
    "HandleNext",
    "HandlerFunc",
    "HandlerFactory",
}


def test_all_is_exactly_the_curated_surface() -> None:
    assert set(mmate.__all__) == EXPECTED
    assert len(set(mmate.__all__)) == len(mmate.__all__)


def test_every_exported_member_exists_and_is_mmate_s_own() -> None:
    for name in mmate.__all__:
        member = getattr(mmate, name)
        if name in ALIASES:  # Annotated / union aliases have no module of their own
            continue
        module = getattr(member, "__module__", "mmate")
        assert module == "mmate" or module.startswith("mmate."), (name, module)


def test_mmate_testing_exports_the_harness_and_its_records() -> None:
    import mmate.testing

    assert set(mmate.testing.__all__) == {
        "Harness",
        "MemoryBroker",
        "Published",
        "Recorder",
        "Settled",
    }
    for name in mmate.testing.__all__:
        assert getattr(mmate.testing, name).__module__.startswith("mmate."), name
