"""Cron expressions: ``parse`` (five or six fields, the ``@`` shorthands, ``@every <duration>``)
into a ``Cron`` whose ``next_after(t)`` is the first tick strictly after ``t``; ``CronError``.
Fields are evaluated by cronsim; ``@every`` (ticks aligned to the Unix epoch) is ours. What is
accepted and how daylight-saving changes behave: docs/runtime/delays.md (Recurring schedules).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

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

    def is_tick(self, moment: datetime) -> bool:
        """``moment`` (aware, in any zone or offset) is one of the ticks. Compared as instants:
        in the repeated hour of a daylight-saving change, a time in ``tz`` never equals the same
        instant written with a fixed offset."""
        found = self.next_after(moment - timedelta(microseconds=1))
        return found.astimezone(UTC) == moment.astimezone(UTC)


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
