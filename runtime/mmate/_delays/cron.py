"""Cron expressions: parse once, then ask for the next tick after a time.

Accepted forms (``parse``):

* five fields ``minute hour day-of-month month day-of-week``, each ``*``, a number, a range
  ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n`` (from ``a`` to the field's end), or a comma list of
  those. Months take ``jan``-``dec``, days of week ``sun``-``sat`` (0 and 7 are Sunday), names in
  any case. As in Vixie cron (and Go's robfig/cron): when both day fields are restricted (neither
  starts with ``*``), a day matches if EITHER matches; otherwise both must.
* ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``), ``@hourly``.
* ``@every <duration>``: ``90s``, ``5m``, ``1h30m``, ``2d`` (units d, h, m, s; whole seconds, at
  least 1 s). Its ticks are the multiples of the duration since the Unix epoch (UTC), so every
  process computes the same tick times, whenever it started.

Times: a ``Cron`` evaluates its fields in its ``tz`` (a ``tzinfo``, default UTC) and returns aware
datetimes. Across a daylight-saving change, wall-clock times that do not exist are skipped and a
repeated wall-clock hour fires once (its first occurrence).

``next_after(t)`` is the first tick strictly after ``t`` (aware). An expression that can never
fire (``0 0 30 2 *``) raises ``CronError`` from ``next_after``, after searching 28 years.
Instances are immutable and safe to share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from ..errors import MmateError

__all__ = ["Cron", "CronError", "parse"]


class CronError(MmateError):
    """An invalid cron expression (the message says which part and why)."""


_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_SHORTHANDS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)
_DURATION = re.compile(r"(\d+)([dhms])")
_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_SEARCH_YEARS = 28  # the Gregorian calendar repeats every 400 years; 28 covers any Feb 29


def _value(text: str, name: str, lo: int, hi: int, names: dict[str, int], expr: str) -> int:
    lowered = text.lower()
    if lowered in names:
        return names[lowered]
    if not text.isdigit():
        raise CronError(f"{expr!r}: {name} field: {text!r} is not a number or a known name")
    number = int(text)
    if not lo <= number <= hi:
        raise CronError(f"{expr!r}: {name} field: {number} is outside {lo}-{hi}")
    return number


def _field(text: str, index: int, expr: str) -> frozenset[int]:
    name, lo, hi, names = _FIELDS[index]
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{expr!r}: {name} field has an empty list item")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{expr!r}: {name} field: step {step_text!r} must be 1 or more")
            step = int(step_text)
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _value(first, name, lo, hi, names, expr)
            end = _value(last, name, lo, hi, names, expr)
            if start > end:
                raise CronError(f"{expr!r}: {name} field: range {base!r} runs backwards")
        else:
            start = _value(base, name, lo, hi, names, expr)
            end = hi if slash else start
        values.update(range(start, end + 1, step))
    if index == 4 and 7 in values:  # Sunday is 0 and 7
        values.discard(7)
        values.add(0)
    return frozenset(values)


def _duration(text: str, expr: str) -> int:
    compact = text.replace(" ", "").lower()
    if not compact or _DURATION.sub("", compact):
        raise CronError(f"{expr!r}: @every takes a duration such as 90s, 5m or 1h30m")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION.findall(compact))
    if seconds < 1:
        raise CronError(f"{expr!r}: @every needs at least 1 s")
    return seconds


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed schedule; build it with ``parse``."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0 = Sunday."""
    day_or: bool
    """Both day fields restricted: a day matches if either does."""
    every: int | None
    """Seconds between ticks for ``@every``; None for field expressions."""
    tz: tzinfo

    def next_after(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (an aware datetime), in ``tz``."""
        if after.tzinfo is None or after.utcoffset() is None:
            raise CronError(f"next_after needs an aware datetime, got {after!r}")
        if self.every is not None:
            stamp = int(after.timestamp() // self.every) * self.every + self.every
            return datetime.fromtimestamp(stamp, UTC).astimezone(self.tz)
        local = after.astimezone(self.tz).replace(tzinfo=None, second=0, microsecond=0)
        candidate = local + timedelta(minutes=1)
        limit = local + timedelta(days=366 * _SEARCH_YEARS)
        while candidate <= limit:
            if candidate.month not in self.months:
                year, month = candidate.year + candidate.month // 12, candidate.month % 12 + 1
                candidate = datetime(year, month, 1)
                continue
            if not self._day_matches(candidate):
                candidate = datetime(candidate.year, candidate.month, candidate.day) + timedelta(
                    days=1
                )
                continue
            if candidate.hour not in self.hours:
                candidate = candidate.replace(minute=0) + timedelta(hours=1)
                continue
            later = [m for m in self.minutes if m >= candidate.minute]
            if not later:
                candidate = candidate.replace(minute=0) + timedelta(hours=1)
                continue
            candidate = candidate.replace(minute=min(later))
            aware = candidate.replace(tzinfo=self.tz)
            exists = aware.astimezone(UTC).astimezone(self.tz).replace(tzinfo=None) == candidate
            if exists and aware > after:
                return aware
            candidate += timedelta(minutes=1)
        raise CronError(f"{self.expression!r} never fires (searched {_SEARCH_YEARS} years)")

    def _day_matches(self, day: datetime) -> bool:
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        return (in_month or in_week) if self.day_or else (in_month and in_week)


def parse(expression: str, tz: tzinfo = UTC) -> Cron:
    """Parse a cron expression (see the module docstring); raises ``CronError`` saying why not."""
    text = " ".join(expression.split())
    lowered = text.lower()
    if lowered.startswith("@every"):
        seconds = _duration(text[len("@every") :], expression)
        nothing: frozenset[int] = frozenset()
        return Cron(expression, nothing, nothing, nothing, nothing, nothing, False, seconds, tz)
    if lowered.startswith("@"):
        if lowered not in _SHORTHANDS:
            known = ", ".join([*_SHORTHANDS, "@every <duration>"])
            raise CronError(f"{expression!r}: unknown shorthand; use one of {known}")
        text = _SHORTHANDS[lowered]
    fields = text.split(" ")
    if len(fields) != 5:
        raise CronError(
            f"{expression!r}: expected 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(fields) if text else 0}"
        )
    minutes, hours, days, months, weekdays = (
        _field(f, i, expression) for i, f in enumerate(fields)
    )
    day_or = not fields[2].startswith("*") and not fields[4].startswith("*")
    return Cron(expression, minutes, hours, days, months, weekdays, day_or, None, tz)
