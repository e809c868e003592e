"""Cron parsing and next-tick computation (cronsim underneath, ``@every`` ours): known answers
with five and six fields, errors, time zones, and random expressions checked against a
minute-by-minute and a second-by-second brute force."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from mmate._delays.cron import CronError, parse


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("*/5 * * * *", "2026-03-01T10:03:00", "2026-03-01T10:05:00"),
        ("*/5 * * * *", "2026-03-01T10:05:00", "2026-03-01T10:10:00"),  # strictly after
        ("*/5 * * * *", "2026-03-01T10:04:59.999", "2026-03-01T10:05:00"),
        ("0 3 * * *", "2026-03-01T03:00:01", "2026-03-02T03:00:00"),
        ("30 9 * * mon-fri", "2026-03-06T10:00:00", "2026-03-09T09:30:00"),  # Fri -> Mon
        ("0 0 1 * *", "2026-01-31T12:00:00", "2026-02-01T00:00:00"),
        ("0 0 31 * *", "2026-04-01T00:00:00", "2026-05-31T00:00:00"),  # April has 30 days
        ("0 0 29 2 *", "2026-01-01T00:00:00", "2028-02-29T00:00:00"),  # next leap day
        ("0 12 * dec *", "2026-12-31T12:00:00", "2027-12-01T12:00:00"),
        ("0 0 * * 7", "2026-03-01T00:00:00", "2026-03-08T00:00:00"),  # 7 is Sunday
        ("0 0 * * SUN", "2026-03-02T00:00:00", "2026-03-08T00:00:00"),
        ("0 0 13 * fri", "2026-03-01T00:00:00", "2026-03-06T00:00:00"),  # day OR weekday
        ("0 0 13 * *", "2026-03-01T00:00:00", "2026-03-13T00:00:00"),
        ("0 0 */10 * *", "2026-03-11T00:00:00", "2026-03-21T00:00:00"),  # 1, 11, 21, 31
        ("5/20 * * * *", "2026-03-01T10:46:00", "2026-03-01T11:05:00"),  # 5, 25, 45
        ("0 8-10/2,17 * * *", "2026-03-01T10:00:00", "2026-03-01T17:00:00"),
        ("59 23 31 12 *", "2026-12-31T23:59:00", "2027-12-31T23:59:00"),
        ("@hourly", "2026-03-01T10:00:00", "2026-03-01T11:00:00"),
        ("@daily", "2026-03-01T10:00:00", "2026-03-02T00:00:00"),
        ("@weekly", "2026-03-01T00:00:00", "2026-03-08T00:00:00"),
        ("@monthly", "2026-03-15T00:00:00", "2026-04-01T00:00:00"),
        ("@yearly", "2026-03-15T00:00:00", "2027-01-01T00:00:00"),
        ("@every 1s", "2026-03-01T10:00:00.5", "2026-03-01T10:00:01"),
        ("@every 5m", "2026-03-01T10:03:00", "2026-03-01T10:05:00"),
        ("@every 1h30m", "2026-03-01T00:00:00", "2026-03-01T01:30:00"),
        ("@every 90s", "2026-03-01T00:00:00", "2026-03-01T00:01:30"),
        # six fields, seconds first (the seed's ScheduleRecurringAsync form)
        ("0 */5 * * * *", "2026-03-01T10:03:07", "2026-03-01T10:05:00"),
        ("0 */5 * * * *", "2026-03-01T10:05:00", "2026-03-01T10:10:00"),
        ("*/15 * * * * *", "2026-03-01T10:03:07", "2026-03-01T10:03:15"),
        ("*/15 * * * * *", "2026-03-01T10:03:45", "2026-03-01T10:04:00"),
        ("30 0 3 * * *", "2026-03-01T03:00:30", "2026-03-02T03:00:30"),
        ("5,10 * * * * mon", "2026-03-01T23:59:59", "2026-03-02T00:00:05"),  # Sun -> Mon
    ],
)
def test_next_tick(expr: str, after: str, expected: str) -> None:
    assert parse(expr).next_after(at(after)) == at(expected)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * *", "expected 5 fields .* or 6 with a leading second field, got 4"),
        ("* * * * * * *", "expected 5 fields"),
        ("", "expected 5 fields"),
        ("60 * * * *", "minute field '60' is invalid"),
        ("* 24 * * *", "hour field '24' is invalid"),
        ("* * 0 * *", "day-of-month field '0' is invalid"),
        ("* * * 13 *", "month field '13' is invalid"),
        ("* * * * 8", "day-of-week field '8' is invalid"),
        ("60 * * * * *", "second field '60' is invalid"),
        ("0 60 * * * *", "minute field '60' is invalid"),
        ("*/0 * * * *", "minute field '\\*/0' is invalid"),
        ("5-1 * * * *", "minute field '5-1' is invalid"),
        ("1,,2 * * * *", "minute field '1,,2' is invalid"),
        ("* * * foo *", "month field 'foo' is invalid"),
        ("@sometimes", "unknown shorthand"),
        ("@every", "@every takes a duration"),
        ("@every 5 minutes", "@every takes a duration"),
        ("@every 0s", "at least 1 s"),
    ],
)
def test_invalid_expressions_say_why(expr: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse(expr)


def test_an_expression_that_never_fires_is_an_error_not_a_hang() -> None:
    with pytest.raises(CronError, match="'0 0 30 2 \\*': day-of-month field '30'"):
        parse("0 0 30 2 *")  # refused at once: February never has a 30th
    # restricted day-of-month and day-of-week: either matches, so it does fire
    assert parse("0 0 29 2 mon").next_after(at("2026-01-01T00:00:00")) == at("2026-02-02T00:00:00")


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(CronError, match="aware"):
        parse("@hourly").next_after(datetime(2026, 1, 1))


def test_every_ticks_are_aligned_to_the_epoch_so_all_processes_agree() -> None:
    cron = parse("@every 7s")
    a = cron.next_after(at("2026-03-01T00:00:00.3"))
    b = cron.next_after(at("2026-03-01T00:00:02"))
    assert a == b and int(a.timestamp()) % 7 == 0


def test_time_zone_and_daylight_saving() -> None:
    oslo = ZoneInfo("Europe/Oslo")
    cron = parse("30 2 * * *", oslo)
    # 2026-03-29: clocks jump from 02:00 to 03:00 in Oslo; 02:30 does not exist that day, and
    # the job fires when the clock jumps past it (Debian cron), not a day late.
    first = cron.next_after(datetime(2026, 3, 28, 12, 0, tzinfo=oslo))
    assert first == datetime(2026, 3, 29, 3, 0, tzinfo=oslo)
    assert cron.next_after(first) == datetime(2026, 3, 30, 2, 30, tzinfo=oslo)
    # 2026-10-25: 02:00-03:00 happens twice; it fires once.
    ticks = []
    t = datetime(2026, 10, 24, 12, 0, tzinfo=oslo)
    for _ in range(2):
        t = cron.next_after(t)
        ticks.append(t.astimezone(UTC))
    assert ticks[1] - ticks[0] == timedelta(hours=25)
    nine = parse("0 9 * * *", oslo).next_after(at("2026-06-01T00:00:00"))
    assert nine == at("2026-06-01T07:00:00")  # 09:00 CEST


def _matches_brute(fields: list[set[int]], day_or: bool, t: datetime) -> bool:
    minute, hour, dom, month, dow = fields
    weekday = (t.weekday() + 1) % 7
    in_dom, in_dow = t.day in dom, weekday in dow
    day = (in_dom or in_dow) if day_or else (in_dom and in_dow)
    return t.minute in minute and t.hour in hour and t.month in month and day


def _random_field(rng: random.Random, lo: int, hi: int) -> tuple[str, set[int]]:
    kind = rng.choice(["star", "value", "range", "step", "list", "rangestep"])
    if kind == "star":
        return "*", set(range(lo, hi + 1))
    if kind == "value":
        v = rng.randint(lo, hi)
        return str(v), {v}
    if kind == "range":
        a = rng.randint(lo, hi)
        b = rng.randint(a, hi)
        return f"{a}-{b}", set(range(a, b + 1))
    if kind == "step":
        s = rng.randint(1, max(1, (hi - lo) // 2))
        return f"*/{s}", set(range(lo, hi + 1, s))
    if kind == "rangestep":
        a = rng.randint(lo, hi)
        b = rng.randint(a, hi)
        s = rng.randint(1, 5)
        return f"{a}-{b}/{s}", set(range(a, b + 1, s))
    values = sorted({rng.randint(lo, hi) for _ in range(rng.randint(2, 4))})
    return ",".join(map(str, values)), set(values)


def test_random_expressions_agree_with_a_minute_by_minute_search() -> None:
    rng = random.Random(2026)
    bounds = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
    checked = 0
    while checked < 60:
        parts = [_random_field(rng, lo, hi) for lo, hi in bounds]
        # Keep the brute force short: month and day-of-month unrestricted mostly.
        if rng.random() < 0.7:
            parts[3] = ("*", set(range(1, 13)))
        texts = [p[0] for p in parts]
        fields = [p[1] for p in parts]
        day_or = not texts[2].startswith("*") and not texts[4].startswith("*")
        start = at("2026-01-01T00:00:00") + timedelta(minutes=rng.randrange(525_600))
        t = start + timedelta(minutes=1)
        found = None
        for _ in range(60 * 24 * 62):
            if _matches_brute(fields, day_or, t):
                found = t
                break
            t += timedelta(minutes=1)
        if found is None:
            continue  # too rare for the brute force's horizon
        assert parse(" ".join(texts)).next_after(start) == found, " ".join(texts)
        checked += 1


def test_random_six_field_expressions_agree_with_a_second_by_second_search() -> None:
    rng = random.Random(14)
    checked = 0
    while checked < 40:
        second = _random_field(rng, 0, 59)
        minute = _random_field(rng, 0, 59)
        hour = _random_field(rng, 0, 23) if rng.random() < 0.3 else ("*", set(range(24)))
        start = at("2026-01-01T00:00:00") + timedelta(seconds=rng.randrange(31_536_000))
        t = start.replace(microsecond=0) + timedelta(seconds=1)
        found = None
        for _ in range(3600 * 24):
            if t.second in second[1] and t.minute in minute[1] and t.hour in hour[1]:
                found = t
                break
            t += timedelta(seconds=1)
        if found is None:
            continue
        expr = f"{second[0]} {minute[0]} {hour[0]} * * *"
        assert parse(expr).next_after(start) == found, expr
        checked += 1


def test_six_fields_say_they_tick_within_a_minute() -> None:
    assert parse("*/10 * * * * *").has_seconds and parse("@every 5s").has_seconds
    assert not parse("*/5 * * * *").has_seconds


@pytest.mark.parametrize("expr", ["*/15 * * * *", "0 * * * *", "30 2 * * *", "@every 900s"])
def test_ticks_in_the_repeated_hour_of_a_dst_change_are_ticks_in_any_offset(expr: str) -> None:
    """A scheduler's claim carries its tick with a fixed offset (JSON): every tick of the hour that
    Europe/Oslo repeats on 2026-10-25 is recognised as one, in both passes, and moments between
    ticks are not (the forged-claim check)."""
    cron = parse(expr, ZoneInfo("Europe/Oslo"))
    start = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)  # 01:00 CEST, before the repeat
    moment, seen = start, 0
    while moment < datetime(2026, 10, 25, 2, 0, tzinfo=UTC):
        moment = cron.next_after(moment)
        as_sent = datetime.fromisoformat(moment.isoformat())  # fixed offset, as on the wire
        assert cron.is_tick(as_sent), as_sent
        assert not cron.is_tick(as_sent + timedelta(seconds=1))
        seen += 1
    assert seen >= 1
