"""Compressed bodies for the compression tests: bombs that are cheap to build, and the
failure app's route with compression on."""

from __future__ import annotations

import struct
import zlib
from dataclasses import replace
from functools import cache

from backports import zstd
from failure_app import FailureApp
from mmate import PublishRoute
from mmate._contract.topology import Compression

MIB = 1 << 20


@cache
def gzip_bomb(mib: int = 1024) -> bytes:
    """One valid gzip member that inflates to ``mib`` MiB of zeros (1 GiB by default, about
    1 MiB compressed). Built from one compressed MiB repeated: a full flush resets the deflate
    state, so every further MiB compresses to the same bytes; then an empty final block and the
    real CRC-32 and size trailer."""
    chunk = bytes(MIB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    first = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(chunk, crc)
    final_empty_block = b"\x03\x00"
    trailer = struct.pack("<II", crc, (mib * MIB) & 0xFFFFFFFF)
    return first + again * (mib - 1) + final_empty_block + trailer


@cache
def zstd_bomb(mib: int = 1024) -> bytes:
    """One zstd frame of ``mib`` MiB of zeros (about 32 KiB compressed for 1 GiB)."""
    compressor = zstd.ZstdCompressor()
    chunk = bytes(MIB)
    parts = [compressor.compress(chunk) for _ in range(mib)]
    parts.append(compressor.flush())
    return b"".join(parts)


def compressed_route(
    app: FailureApp,
    compress: Compression | None = "gzip",
    *,
    above: int = 1024,
    max_message_bytes: int | None = None,
) -> PublishRoute:
    """The failure app's publish route with compression (and a size limit) set, as the
    generator would write it for ``compress: gzip`` (``compress_above`` 1 KiB, the default)."""
    return replace(
        app.topology.publishes["CreateOrderCommand"],
        compress=compress,
        compress_above=above,
        max_message_bytes=max_message_bytes,
    )


ROUTING_KEY = "cmd.fail.CreateOrderCommand"
