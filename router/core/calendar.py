"""Business hours: whether a queue is open at an instant, and which calendars are possible.

A calendar is weekly opening intervals in an IANA time zone, minus holiday dates. Time zones are
read from the pinned `tzdata` package, never from the host's database: the leader, its standby and
a replay on another machine must agree on every instant, which they would not if each used its
own tz database version. The files are immutable package data, so reading them keeps the core's
promise (the same commands give the same state).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache, lru_cache
from importlib import resources
from typing import Final
from zoneinfo import ZoneInfo

from router.core.errors import InvalidArgument, quoted
from router.core.limits import HOLIDAYS_PER_CALENDAR_MAX, OPEN_HOURS_PER_CALENDAR_MAX
from router.core.model import BusinessHours, OpenHours, Weekday

__all__ = ["check_business_hours", "is_open"]

_MINUTES_PER_DAY: Final = 24 * 60
_TIME_PATTERN: Final = re.compile(r"([0-9]{2}):([0-9]{2})")
# date.fromisoformat also takes "20260101" and week dates; a calendar spells dates one way.
_DATE_PATTERN: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_WEEKDAY_INDEX: Final = {day: index for index, day in enumerate(Weekday)}
"""Weekday -> datetime.weekday() (Monday is 0): the enum is declared Monday first."""
_CALENDARS_BY_IDENTITY_MAX: Final = 4096
"""Above QUEUES_MAX, so the queues' calendars stay cached while a few replaced ones linger."""


@dataclass(frozen=True, slots=True)
class _Calendar:
    """A checked calendar in the form `is_open` reads."""

    zone: ZoneInfo
    intervals_by_weekday: tuple[tuple[tuple[int, int], ...], ...]
    """Per weekday (Monday first): (opens, closes) minutes of the day, closes exclusive."""
    holiday_ordinals: frozenset[int]
    """date.toordinal() of each holiday."""

    def is_open(self, now_ms: int) -> bool:
        local = datetime.fromtimestamp(now_ms // 1000, self.zone)
        if self.holiday_ordinals and local.toordinal() in self.holiday_ordinals:
            return False
        minute = local.hour * 60 + local.minute
        for opens, closes in self.intervals_by_weekday[local.weekday()]:
            if opens <= minute < closes:
                return True
        return False


def check_business_hours(field: str, hours: BusinessHours) -> None:
    """Raise InvalidArgument, naming the field under `field`, if `hours` is not a possible
    calendar (unknown time zone, malformed or overlapping hours, bad holidays, never open)."""
    _build(field, hours)


def is_open(hours: BusinessHours, now_ms: int) -> bool:
    """Whether the calendar is open at `now_ms` (Unix epoch milliseconds): the local date (in
    the calendar's time zone, daylight saving time included) is not a holiday and the local
    minute of the day falls in one of that weekday's [opens, closes) intervals.

    `hours` must have passed `check_business_hours` (else InvalidArgument is raised)."""
    return _calendar(hours).is_open(now_ms)


# Two caches: by identity first, because hashing a BusinessHours hashes every interval and
# holiday (tens of microseconds for a large calendar) while the engine passes the same object
# on every call; by value behind it, so equal calendars (e.g. decoded from a snapshot) share
# one parse. The identity entry holds the object itself, so its id cannot be reused while cached.
_calendars_by_identity: dict[int, tuple[BusinessHours, _Calendar]] = {}


def _calendar(hours: BusinessHours) -> _Calendar:
    entry = _calendars_by_identity.get(id(hours))
    if entry is not None and entry[0] is hours:
        return entry[1]
    calendar = _calendar_by_value(hours)
    if len(_calendars_by_identity) >= _CALENDARS_BY_IDENTITY_MAX:
        _calendars_by_identity.clear()
    _calendars_by_identity[id(hours)] = (hours, calendar)
    return calendar


@lru_cache(maxsize=_CALENDARS_BY_IDENTITY_MAX)
def _calendar_by_value(hours: BusinessHours) -> _Calendar:
    return _build("business_hours", hours)


def _build(field: str, hours: BusinessHours) -> _Calendar:
    """Check the calendar and compile it: one pass, so validation and use cannot disagree."""
    zone = _zone(f"{field}.time_zone", hours.time_zone)
    if not hours.weekly:
        raise InvalidArgument(
            f"{field}.weekly", "has no opening hours, so the queue could never open"
        )
    if len(hours.weekly) > OPEN_HOURS_PER_CALENDAR_MAX:
        raise InvalidArgument(
            f"{field}.weekly",
            f"has {len(hours.weekly)} intervals, the limit is {OPEN_HOURS_PER_CALENDAR_MAX}",
        )
    if len(hours.holidays) > HOLIDAYS_PER_CALENDAR_MAX:
        raise InvalidArgument(
            f"{field}.holidays",
            f"has {len(hours.holidays)} dates, the limit is {HOLIDAYS_PER_CALENDAR_MAX}",
        )
    by_weekday: list[list[tuple[int, int]]] = [[] for _ in Weekday]
    checked: list[tuple[OpenHours, int, int]] = []
    for i, interval in enumerate(hours.weekly):
        opens, closes = _interval(f"{field}.weekly[{i}]", interval)
        for j, (other, other_opens, other_closes) in enumerate(checked):
            if other.day is interval.day and opens < other_closes and other_opens < closes:
                raise InvalidArgument(
                    f"{field}.weekly[{i}]",
                    f"{_describe(interval)} overlaps weekly[{j}] ({_describe(other)})",
                )
        checked.append((interval, opens, closes))
        by_weekday[_WEEKDAY_INDEX[interval.day]].append((opens, closes))
    holidays: dict[int, int] = {}
    for i, text in enumerate(hours.holidays):
        ordinal = _holiday(f"{field}.holidays[{i}]", text)
        if ordinal in holidays:
            raise InvalidArgument(
                f"{field}.holidays[{i}]", f"{quoted(text)} repeats holidays[{holidays[ordinal]}]"
            )
        holidays[ordinal] = i
    return _Calendar(
        zone,
        tuple(tuple(sorted(day)) for day in by_weekday),
        frozenset(holidays),
    )


def _interval(field: str, interval: OpenHours) -> tuple[int, int]:
    """The (opens, closes) minutes of the day of one interval, checked on its own."""
    opens = _minutes(f"{field}.opens", interval.opens, closing=False)
    closes = _minutes(f"{field}.closes", interval.closes, closing=True)
    if closes <= opens:
        raise InvalidArgument(
            f"{field}.closes",
            f"{quoted(interval.closes)} is not after opens {quoted(interval.opens)} (an interval "
            "past midnight is two: until 24:00, then from 00:00 of the next day)",
        )
    return opens, closes


def _minutes(field: str, text: str, *, closing: bool) -> int:
    """Minutes of the day of an "HH:MM" time: 00:00..23:59 for opens, 00:01..24:00 for closes."""
    match = _TIME_PATTERN.fullmatch(text)
    if match is None:
        raise InvalidArgument(field, f'must be "HH:MM" (e.g. "09:30"), got {quoted(text)}')
    hour, minute = int(match[1]), int(match[2])
    minutes = hour * 60 + minute
    if closing:
        low, high, spelled = 1, _MINUTES_PER_DAY, "00:01 and 24:00"
    else:
        low, high, spelled = 0, _MINUTES_PER_DAY - 1, "00:00 and 23:59"
    if minute > 59 or not low <= minutes <= high:
        raise InvalidArgument(field, f"must be between {spelled}, got {quoted(text)}")
    return minutes


def _describe(interval: OpenHours) -> str:
    return f"{interval.day.value} {interval.opens}-{interval.closes}"


def _holiday(field: str, text: str) -> int:
    if _DATE_PATTERN.fullmatch(text) is None:
        raise InvalidArgument(field, f'must be a date "YYYY-MM-DD", got {quoted(text)}')
    try:
        return date.fromisoformat(text).toordinal()
    except ValueError:
        raise InvalidArgument(field, f"{quoted(text)} is not a calendar date") from None


def _zone(field: str, key: str) -> ZoneInfo:
    if not key:
        raise InvalidArgument(field, 'is required (an IANA time zone name, e.g. "Europe/Paris")')
    if key not in _zone_keys():
        near = [known for known in sorted(_zone_keys()) if known.casefold() == key.casefold()]
        hint = f"; did you mean {near[0]!r}?" if near else ' (e.g. "Europe/Paris")'
        raise InvalidArgument(field, f"{quoted(key)} is not an IANA time zone name{hint}")
    return _load_zone(key)


@lru_cache(maxsize=1)
def _zone_keys() -> frozenset[str]:
    """The zone names of the pinned tzdata (its `zones` file lists them, links included)."""
    text = resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


@cache
def _load_zone(key: str) -> ZoneInfo:
    """The zone from the pinned tzdata (ZoneInfo(key) would prefer the host's database). `key`
    is one of `_zone_keys()`, so it names a file inside the package."""
    path = resources.files("tzdata").joinpath("zoneinfo")
    for part in key.split("/"):
        path = path.joinpath(part)
    with path.open("rb") as file:
        return ZoneInfo.from_file(file, key=key)
