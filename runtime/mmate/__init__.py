"""mmate: contract-first messaging over RabbitMQ, wire-compatible with Mmate for Go and .NET."""

from .client import Batch, Client, Publication, Serving
from .context import MessageContext
from .errors import (
    AccessRefused,
    BatchFailure,
    BatchPublishError,
    BrokerConnectionError,
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
    TopologyError,
    TransientError,
    UnroutableError,
)
from .handler import HandlerBase
from .model import Model
from .options import PublishOptions
from .publisher import Publisher, PublishTransport
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
from .types import Base64Bytes, JsonDecimal

__all__ = [
    "AccessRefused",
    "Base64Bytes",
    "Batch",
    "BatchFailure",
    "BatchPublishError",
    "BindingDef",
    "BrokerConnectionError",
    "Client",
    "DecodeError",
    "EntityNotFound",
    "ExchangeDef",
    "FeatureNotAvailable",
    "HandlerBase",
    "HandlerRoute",
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
    "PublishError",
    "PublishOptions",
    "PublishRoute",
    "PublishTimeout",
    "PublishTransport",
    "Publisher",
    "QueueDef",
    "RemoteError",
    "ReplyError",
    "RequestTimeout",
    "RetryPolicy",
    "Serving",
    "ServiceTopology",
    "TopologyError",
    "TransientError",
    "UnroutableError",
]
