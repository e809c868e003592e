"""Cron expressions: parse once, then ask for the next tick after a time.

Field expressions are evaluated by cronsim (a small, typed, pure-Python library without
dependencies, kept by the Healthchecks project; docs/runtime/delays.md says why this one). What
``parse`` accepts:

* five fields ``minute hour day-of-month month day-of-week``, or six with a leading seconds field
  ``second minute hour day-of-month month day-of-week`` (``0 */5 * * * *``: every five minutes, at
  second 0; the form the seed's ``ScheduleRecurringAsync`` uses). Each field is ``*``, a number, a
  range ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n``, or a comma list of those; months take
  ``jan``-``dec``, days of week ``sun``-``sat`` (0 and 7 are Sunday), names in any case; cronsim's
  ``L`` (last day), ``LW`` and ``weekday#n`` too. As in Vixie and Debian cron (and Go's
  robfig/cron): when both day fields are restricted (neither starts with ``*``), a day matches if
  EITHER matches; otherwise both must.
* ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``), ``@hourly``.
* ``@every <duration>``: ``90s``, ``5m``, ``1h30m``, ``2d`` (units d, h, m, s; whole seconds, at
  least 1 s). Its ticks are the multiples of the duration since the Unix epoch (UTC), so every
  process computes the same tick times, whenever it started. (Ours: cronsim has no ``@every``.)

Times: a ``Cron`` evaluates its fields in its ``tz`` (a ``tzinfo``, default UTC) and returns aware
datetimes. Across a daylight-saving change a five-field expression behaves as Debian cron: a
wall-clock time that does not exist fires when the clock jumps past it, a repeated wall-clock hour
fires once.

``next_after(t)`` is the first tick strictly after ``t`` (aware). An expression that can never
fire (``0 0 30 2 *``) is a ``CronError`` from ``parse``, or from ``next_after`` after cronsim
searched 50 years. Instances are immutable and safe to share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from cronsim import CronSim, CronSimError

from ..errors import MmateError

__all__ = ["Cron", "CronError", "parse"]


class CronError(MmateError):
    """An invalid cron expression (the message says which part and why)."""


_SHORTHANDS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_NAMES = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
_DURATION = re.compile(r"(\d+)([dhms])")
_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_PROBE = datetime(2000, 1, 1, tzinfo=UTC)


def _duration(text: str, expr: str) -> int:
    compact = text.replace(" ", "").lower()
    if not compact or _DURATION.sub("", compact):
        raise CronError(f"{expr!r}: @every takes a duration such as 90s, 5m or 1h30m")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION.findall(compact))
    if seconds < 1:
        raise CronError(f"{expr!r}: @every needs at least 1 s")
    return seconds


def _invalid(expression: str, fields: list[str], error: CronSimError) -> CronError:
    """cronsim's "Bad minute" as an error naming the expression, the field and its text."""
    reason = str(error)
    six = fields if len(fields) == 6 else ["0", *fields]
    for name, text in zip(_NAMES, six, strict=True):
        if reason.lower().endswith(f" {name}"):
            return CronError(f"{expression!r}: {name} field {text!r} is invalid ({reason})")
    return CronError(f"{expression!r}: {reason}")


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed schedule; build it with ``parse``."""

    expression: str
    fields: str
    """The field expression handed to cronsim (a shorthand expanded); empty for ``@every``."""
    every: int | None
    """Seconds between ticks for ``@every``; None for field expressions."""
    tz: tzinfo

    @property
    def has_seconds(self) -> bool:
        """Ticks may fall within a minute (six fields, or ``@every``)."""
        return self.every is not None or len(self.fields.split()) == 6

    def next_after(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (an aware datetime), in ``tz``."""
        if after.tzinfo is None or after.utcoffset() is None:
            raise CronError(f"next_after needs an aware datetime, got {after!r}")
        if self.every is not None:
            stamp = int(after.timestamp() // self.every) * self.every + self.every
            return datetime.fromtimestamp(stamp, UTC).astimezone(self.tz)
        try:
            tick = next(CronSim(self.fields, after.astimezone(self.tz)))
        except StopIteration:
            raise CronError(f"{self.expression!r} never fires (searched 50 years)") from None
        return tick.astimezone(self.tz)


def parse(expression: str, tz: tzinfo = UTC) -> Cron:
    """Parse a cron expression (see the module docstring); raises ``CronError`` saying why not."""
    text = " ".join(expression.split())
    lowered = text.lower()
    if lowered.startswith("@every"):
        return Cron(expression, "", _duration(text[len("@every") :], expression), tz)
    if lowered.startswith("@"):
        if lowered not in _SHORTHANDS:
            known = ", ".join([*_SHORTHANDS, "@every <duration>"])
            raise CronError(f"{expression!r}: unknown shorthand; use one of {known}")
        text = _SHORTHANDS[lowered]
    fields = text.split(" ") if text else []
    if len(fields) not in (5, 6):
        raise CronError(
            f"{expression!r}: expected 5 fields (minute hour day-of-month month day-of-week) "
            f"or 6 with a leading second field, got {len(fields)}"
        )
    try:
        CronSim(text, _PROBE)  # validates every field now, not at the first tick
    except CronSimError as exc:
        raise _invalid(expression, fields, exc) from None
    return Cron(expression, text, None, tz)
