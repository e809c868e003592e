"""mmate: contract-first messaging over RabbitMQ, wire-compatible with Mmate for Go and .NET."""

from ._consuming.serving import Serving
from ._contract.context import MessageContext
from ._contract.handler import HandlerBase
from ._contract.model import Model
from ._contract.options import PublishOptions
from ._contract.publish_method import PublishMethod
from ._contract.publisher import Publisher, PublishTransport
from ._contract.registry import HandlerFactory, HandlerFunc, HandlerRegistry, MessageHandler
from ._contract.topology import (
    BindingDef,
    ExchangeDef,
    HandlerRoute,
    HeaderValue,
    MessageDef,
    PublishRoute,
    QueueDef,
    RetryPolicy,
    ServiceTopology,
)
from ._contract.types import Base64Bytes, JsonDecimal
from ._delays.cron import CronError
from ._delays.scheduler import Scheduler
from ._failures.breaker import BreakerState, CircuitBreaker
from ._failures.handler_breaker import HandlerBreakerOptions
from ._hosting.app import App, ScheduleEntry
from ._observation.interceptors import HandleNext, Interceptor, Outcome, PublishInfo, PublishNext
from ._operations.health import CheckResult, HealthReport, QueueStats, check_health
from ._operations.health_http import HealthServer, serve_health
from ._publishing.batch import Batch, Publication
from ._publishing.breaker import PublishBreakerOptions
from ._publishing.transaction import Transaction
from ._transport.recovery import ConnectionEvent, ReconnectPolicy
from ._version import __version__
from .client import Client, ClientOptions, ClientSettings
from .errors import (
    AccessRefused,
    BatchFailure,
    BatchPublishError,
    BrokerConnectionError,
    ChannelClosed,
    ChannelTimeout,
    CircuitOpenError,
    DecodeError,
    EntityNotFound,
    FeatureNotAvailable,
    MessageTooLarge,
    MmateError,
    NackError,
    PermanentError,
    PreconditionFailed,
    PublishError,
    PublishTimeout,
    RemoteError,
    ReplyError,
    RequestTimeout,
    ResourceLocked,
    RetryAfter,
    TopologyError,
    TransactionError,
    TransientError,
    UnroutableError,
    new_permanent_error,
    new_transient_error,
)

__all__ = [
    "__version__",
    "serve_health",
    "check_health",
    "QueueStats",
    "HealthServer",
    "HealthReport",
    "CheckResult",
    "AccessRefused",
    "Base64Bytes",
    "Batch",
    "BatchFailure",
    "BatchPublishError",
    "BindingDef",
    "BreakerState",
    "BrokerConnectionError",
    "ChannelClosed",
    "CircuitBreaker",
    "CircuitOpenError",
    "Client",
    "ClientOptions",
    "App",
    "ScheduleEntry",
    "ClientSettings",
    "ConnectionEvent",
    "CronError",
    "DecodeError",
    "EntityNotFound",
    "ExchangeDef",
    "FeatureNotAvailable",
    "MessageTooLarge",
    "HandlerBase",
    "HandlerFactory",
    "HandlerFunc",
    "HandlerRegistry",
    "MessageHandler",
    "HandlerBreakerOptions",
    "HandlerRoute",
    "HandleNext",
    "Interceptor",
    "Outcome",
    "PublishInfo",
    "PublishNext",
    "HeaderValue",
    "JsonDecimal",
    "MessageContext",
    "MessageDef",
    "MmateError",
    "Model",
    "NackError",
    "PermanentError",
    "PreconditionFailed",
    "Publication",
    "PublishBreakerOptions",
    "PublishError",
    "PublishMethod",
    "PublishOptions",
    "PublishRoute",
    "PublishTimeout",
    "ChannelTimeout",
    "ResourceLocked",
    "PublishTransport",
    "Publisher",
    "QueueDef",
    "ReconnectPolicy",
    "RemoteError",
    "ReplyError",
    "RequestTimeout",
    "RetryAfter",
    "RetryPolicy",
    "Scheduler",
    "Serving",
    "ServiceTopology",
    "TopologyError",
    "Transaction",
    "TransactionError",
    "TransientError",
    "UnroutableError",
    "new_permanent_error",
    "new_transient_error",
]
