"""Compressed bodies: ``gzip`` (the standard library's zlib) and ``zstd`` (the ``mmate[zstd]``
extra: ``backports.zstd`` before Python 3.14, the standard library's ``compression.zstd`` from
3.14 on; the same API either way, imported on first use).

Contract:

* ``compress(body, codec)`` returns the compressed bytes; ``zstd`` without the extra raises
  ``FeatureNotAvailable`` naming the pip command. Nothing here decides *whether* to compress
  (the outbox does: route or publish option, threshold).
* ``decompress(body, content_encoding, limit=...)`` returns the decoded body. A body whose
  ``content_encoding`` is absent or an identity value (``identity``, or the charset ``utf-8``
  mmate itself writes) comes back as it is, not copied. Inflating is bounded: never more than
  ``limit + 1`` bytes are produced, however far the stream would expand (a decompression bomb
  costs at most ``limit`` bytes of memory and stops there). Anything else raises ``Unreadable``
  with a ``reason``: ``oversized`` (decoded size above ``limit``), ``unknown-encoding`` (a coding
  this runtime does not read, or zstd without the extra), ``bad-compression`` (corrupt,
  truncated, or trailing bytes after the stream). The caller keeps the original bytes for the
  dead letter.
* Concatenated gzip members and zstd frames are one body (RFC 1952 and RFC 8878 allow it); the
  limit counts them together.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable
from typing import Final, Literal, Protocol

from .._contract.topology import Compression
from ..errors import FeatureNotAvailable

GZIP: Final = "gzip"
ZSTD: Final = "zstd"
CODECS: Final = frozenset({GZIP, ZSTD})
IDENTITY: Final = frozenset({"", "identity", "utf-8", "utf8"})
"""``content_encoding`` values that mean "not compressed": none, HTTP's ``identity``, and the
charset ``utf-8`` (mmate's own publishes write it; it is not a content coding)."""
ZSTD_PIP: Final = "pip install 'mmate[zstd]'"

Reason = Literal["oversized", "unknown-encoding", "bad-compression"]

_GZIP_WBITS = 16 + zlib.MAX_WBITS
"""zlib's window bits for the gzip container (header, CRC-32 and size trailer)."""
_SHOWN = 40
"""Characters of a foreign ``content_encoding`` quoted in an error (a shortstr has up to 255)."""


class Unreadable(Exception):
    """The body cannot be decoded; ``reason`` is its dead-letter reason."""

    def __init__(self, reason: Reason, text: str) -> None:
        super().__init__(text)
        self.reason: Reason = reason
        self.text = text


class _Member(Protocol):
    """What zlib's and zstd's decompressor objects have in common: one gzip member or zstd
    frame, inflated with an output bound."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


def _zstd_missing(doing: str) -> str:
    return f"{doing} needs the zstd extra, which is not installed: {ZSTD_PIP}"


def _zstd_compress(body: bytes) -> bytes:
    try:
        if sys.version_info >= (3, 14):
            from compression import zstd
        else:
            import backports.zstd as zstd
    except ImportError:
        raise FeatureNotAvailable(_zstd_missing("compress='zstd'")) from None
    return zstd.compress(body, options={zstd.CompressionParameter.checksum_flag: 1})


def _zstd_member() -> _Member:
    try:
        if sys.version_info >= (3, 14):
            from compression import zstd
        else:
            import backports.zstd as zstd
    except ImportError:
        raise Unreadable("unknown-encoding", _zstd_missing("content_encoding 'zstd'")) from None
    return zstd.ZstdDecompressor()


def _gzip_member() -> _Member:
    return zlib.decompressobj(_GZIP_WBITS)


def zstd_available() -> bool:
    """Whether this process can compress and decompress zstd (the extra is installed)."""
    try:
        _zstd_member()
    except Unreadable:
        return False
    return True


def compress(body: bytes, codec: Compression) -> bytes:
    """``body`` compressed with ``codec``: gzip level 6 (zlib's default) with no file name and
    a zero mtime, so the same body always gives the same bytes; zstd at its default level 3, with
    the frame's content checksum (4 bytes), so that a corrupt frame is refused, not misread; gzip
    always has its CRC-32."""
    if codec == GZIP:
        compressor = zlib.compressobj(6, zlib.DEFLATED, _GZIP_WBITS)
        return compressor.compress(body) + compressor.flush()
    if codec == ZSTD:
        return _zstd_compress(body)
    raise FeatureNotAvailable(f"unknown compression {codec!r}: use 'gzip' or 'zstd'")


def is_identity(content_encoding: str | None) -> bool:
    """The body is not compressed (see ``IDENTITY``)."""
    return not content_encoding or content_encoding.strip().lower() in IDENTITY


def decompress(body: bytes, content_encoding: str | None, *, limit: int) -> bytes:
    """The decoded body (see the module docstring); raises ``Unreadable``."""
    if not content_encoding:
        return body
    name = content_encoding.strip().lower()
    if name in IDENTITY:
        return body
    if name == GZIP:
        return _inflate(body, limit, GZIP, _gzip_member)
    if name == ZSTD:
        return _inflate(body, limit, ZSTD, _zstd_member)
    shown = content_encoding[:_SHOWN]
    more = f"... ({len(content_encoding)} characters)" if len(content_encoding) > _SHOWN else ""
    raise Unreadable(
        "unknown-encoding",
        f"content_encoding {shown!r}{more} is not one this runtime reads (gzip, zstd, identity)",
    )


def _inflate(body: bytes, limit: int, name: str, member: Callable[[], _Member]) -> bytes:
    """Inflate member after member, producing at most ``limit + 1`` bytes in all: an output
    shorter than its bound means the decompressor had nothing more to give for that input."""
    parts: list[bytes] = []
    total = 0
    data = body
    while True:
        decompressor = member()
        try:
            out = decompressor.decompress(data, limit + 1 - total)
        except Exception as exc:  # zlib.error, zstd.ZstdError: the stream itself is broken
            raise Unreadable(
                "bad-compression", f"{name} body of {len(body)} bytes is corrupt: {exc}"
            ) from None
        total += len(out)
        if total > limit:
            raise Unreadable(
                "oversized",
                f"{name} body of {len(body)} bytes decodes to more than the limit of {limit} "
                "bytes (inflating stopped there)",
            )
        parts.append(out)
        if not decompressor.eof:
            raise Unreadable("bad-compression", f"{name} body of {len(body)} bytes is truncated")
        data = decompressor.unused_data
        if not data:
            return parts[0] if len(parts) == 1 else b"".join(parts)
