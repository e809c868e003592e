"""Field types whose JSON form differs from pydantic's default, used by generated models."""

from __future__ import annotations

import base64
import binascii
from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer


def _decode_base64(value: object) -> object:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"not valid base64: {exc}") from None
    return value


def _encode_base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_decode_base64),
    PlainSerializer(_encode_base64, return_type=str, when_used="json"),
]
"""Bytes in Python, a base64 string in JSON. A ``str`` given to the model is read as base64."""

JsonDecimal = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]
"""A Decimal in Python, a JSON number on the wire (Go and .NET read decimals from JSON numbers)."""
