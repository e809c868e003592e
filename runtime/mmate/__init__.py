"""mmate: contract-first messaging over RabbitMQ, wire-compatible with Mmate for Go and .NET."""

from .breaker import BreakerState, CircuitBreaker
from .client import Batch, Client, Publication, Serving
from .context import MessageContext
from .cron import CronError
from .errors import (
    AccessRefused,
    BatchFailure,
    BatchPublishError,
    BrokerConnectionError,
    CircuitOpenError,
    DecodeError,
    EntityNotFound,
    FeatureNotAvailable,
    MmateError,
    NackError,
    PermanentError,
    PreconditionFailed,
    PublishError,
    PublishTimeout,
    RemoteError,
    ReplyError,
    RequestTimeout,
    RetryAfter,
    TopologyError,
    TransactionError,
    TransientError,
    UnroutableError,
    new_permanent_error,
    new_transient_error,
)
from .handler import HandlerBase
from .handler_breaker import HandlerBreakerOptions
from .health import CheckResult, HealthReport, QueueStats, check_health
from .health_http import HealthServer, serve_health
from .interceptors import HandleNext, Interceptor, Outcome, PublishInfo, PublishNext
from .model import Model
from .options import PublishOptions
from .publish_breaker import PublishBreakerOptions
from .publish_method import PublishMethod
from .publisher import Publisher, PublishTransport
from .recovery import ConnectionEvent, ReconnectPolicy
from .scheduler import Scheduler
from .topology import (
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
from .tx import Transaction
from .types import Base64Bytes, JsonDecimal

__all__ = [
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
    "CircuitBreaker",
    "CircuitOpenError",
    "Client",
    "ConnectionEvent",
    "CronError",
    "DecodeError",
    "EntityNotFound",
    "ExchangeDef",
    "FeatureNotAvailable",
    "HandlerBase",
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
