"""mmate: contract-first messaging over RabbitMQ, wire-compatible with Mmate for Go and .NET."""

from .context import MessageContext
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
    "Base64Bytes",
    "BindingDef",
    "ExchangeDef",
    "HandlerBase",
    "HandlerRoute",
    "HeaderValue",
    "JsonDecimal",
    "MessageContext",
    "MessageDef",
    "Model",
    "PublishOptions",
    "PublishRoute",
    "PublishTransport",
    "Publisher",
    "QueueDef",
    "RetryPolicy",
    "ServiceTopology",
]
