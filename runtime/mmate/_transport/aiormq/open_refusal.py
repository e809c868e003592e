"""Why the broker refused to open a connection, in its own words.

When RabbitMQ refuses ``connection.open`` (a vhost that does not exist, a user without permission
on it) it answers with ``connection.close`` carrying a reply code and text such as ``530
NOT_ALLOWED - vhost orders not found``. aiormq reports that as "Expected one of
['Connection.OpenOk'], got <Connection.Close object at 0x...>", which loses both. ``ask`` repeats
the handshake up to ``connection.open`` with pamqp's frames and returns the broker's
``(reply_code, reply_text)``, so the error can say what the broker said. It runs only after such
a refusal, never on the normal path.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import unquote, urlsplit

import pamqp.frame
from pamqp import commands, constants, header

_FRAME_HEADER = constants.FRAME_HEADER_SIZE


async def _read_frame(reader: asyncio.StreamReader) -> object:
    head = await reader.readexactly(_FRAME_HEADER)
    _type, _channel, size = pamqp.frame.frame_parts(head)
    rest = await reader.readexactly((size or 0) + 1)
    _consumed, _channel, frame = pamqp.frame.unmarshal(head + rest)
    return frame


def _write(writer: asyncio.StreamWriter, frame: object) -> None:
    writer.write(pamqp.frame.marshal(frame, 0))  # type: ignore[arg-type]


async def ask(url: str, context: ssl.SSLContext | None, timeout: float) -> tuple[int, str] | None:
    """The ``(reply_code, reply_text)`` with which the broker at ``url`` closes a connection it
    refuses to open, or None when it opens it after all (or the probe itself fails)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    secure = parts.scheme == "amqps"
    port = parts.port or (5671 if secure else 5672)
    vhost = "/" if parts.path in ("", "/") else unquote(parts.path[1:])
    user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
    tls: ssl.SSLContext | None = (context or ssl.create_default_context()) if secure else None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=tls)
            try:
                writer.write(header.ProtocolHeader().marshal())
                start = await _read_frame(reader)
                if not isinstance(start, commands.Connection.Start):
                    return None
                _write(
                    writer,
                    commands.Connection.StartOk(
                        client_properties={"product": "mmate-py (diagnosis)"},
                        mechanism="PLAIN",
                        response=f"\0{user}\0{password}",
                    ),
                )
                tune = await _read_frame(reader)
                if isinstance(tune, commands.Connection.Close):
                    return tune.reply_code or 0, tune.reply_text
                if not isinstance(tune, commands.Connection.Tune):
                    return None
                _write(writer, commands.Connection.TuneOk(tune.channel_max, tune.frame_max, 0))
                _write(writer, commands.Connection.Open(virtual_host=vhost))
                answer = await _read_frame(reader)
                if isinstance(answer, commands.Connection.Close):
                    return answer.reply_code or 0, answer.reply_text
                return None
            finally:
                writer.close()
    except (Exception, TimeoutError):
        return None
