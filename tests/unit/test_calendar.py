"""Business hours: when a queue is open (local time, daylight saving time, holidays), and every
impossible calendar refused with the name of the field at fault."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.core.calendar import check_business_hours, is_open
from router.core.errors import InvalidArgument
from router.core.limits import HOLIDAYS_PER_CALENDAR_MAX, OPEN_HOURS_PER_CALENDAR_MAX
from router.core.model import BusinessHours, OpenHours, Weekday

WEEKDAYS = (Weekday.MONDAY, Weekday.TUESDAY, Weekday.WEDNESDAY, Weekday.THURSDAY, Weekday.FRIDAY)
OFFICE = BusinessHours(
    "Europe/Paris",
    tuple(OpenHours(day, "09:00", "17:00") for day in WEEKDAYS),
    ("2026-05-01",),
)


def utc_ms(year: int, month: int, day: int, hour: int, minute: int = 0) -> int:
    """Epoch ms of a UTC wall time: expectations are written against UTC offsets worked out by
    hand (Paris is UTC+1 in winter, UTC+2 in summer), not against the code's tz database."""
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * 1000


# -- when a calendar is open --------------------------------------------------------------------


def test_weekday_hours_in_local_time() -> None:
    # Monday 5 January 2026, Paris on UTC+1.
    assert not is_open(OFFICE, utc_ms(2026, 1, 5, 7, 59))  # 08:59 local
    assert is_open(OFFICE, utc_ms(2026, 1, 5, 8, 0))  # 09:00 local: opens is inclusive
    assert is_open(OFFICE, utc_ms(2026, 1, 5, 15, 59))  # 16:59 local
    assert not is_open(OFFICE, utc_ms(2026, 1, 5, 16, 0))  # 17:00 local: closes is exclusive
    # Saturday 10 and Sunday 11 January: no hours.
    assert not is_open(OFFICE, utc_ms(2026, 1, 10, 10))
    assert not is_open(OFFICE, utc_ms(2026, 1, 11, 10))


def test_seconds_within_the_last_open_minute_are_open() -> None:
    assert is_open(OFFICE, utc_ms(2026, 1, 5, 15, 59) + 59_999)
    assert not is_open(OFFICE, utc_ms(2026, 1, 5, 15, 59) + 60_000)


def test_several_intervals_a_day_with_a_lunch_break() -> None:
    hours = BusinessHours(
        "UTC",
        (OpenHours(Weekday.MONDAY, "13:30", "18:00"), OpenHours(Weekday.MONDAY, "08:00", "12:00")),
    )
    assert is_open(hours, utc_ms(2026, 1, 5, 11, 59))
    assert not is_open(hours, utc_ms(2026, 1, 5, 12, 0))
    assert not is_open(hours, utc_ms(2026, 1, 5, 13, 29))
    assert is_open(hours, utc_ms(2026, 1, 5, 13, 30))


def test_24_00_closes_at_the_end_of_the_day() -> None:
    hours = BusinessHours("UTC", (OpenHours(Weekday.FRIDAY, "18:00", "24:00"),))
    # Friday 9 January 2026.
    assert is_open(hours, utc_ms(2026, 1, 9, 23, 59))
    assert not is_open(hours, utc_ms(2026, 1, 10, 0, 0))


def test_round_the_clock_across_midnight() -> None:
    hours = BusinessHours(
        "UTC",
        (
            OpenHours(Weekday.FRIDAY, "22:00", "24:00"),
            OpenHours(Weekday.SATURDAY, "00:00", "02:00"),
        ),
    )
    assert is_open(hours, utc_ms(2026, 1, 9, 23, 59))
    assert is_open(hours, utc_ms(2026, 1, 10, 0, 0))
    assert is_open(hours, utc_ms(2026, 1, 10, 1, 59))
    assert not is_open(hours, utc_ms(2026, 1, 10, 2, 0))


def test_closed_all_day_on_a_holiday() -> None:
    # Friday 1 May 2026 is a holiday; Thursday 30 April is not. Paris on UTC+2.
    assert is_open(OFFICE, utc_ms(2026, 4, 30, 10))
    assert not is_open(OFFICE, utc_ms(2026, 5, 1, 10))


def test_holidays_are_local_dates() -> None:
    hours = BusinessHours(
        "Asia/Tokyo",  # UTC+9, no daylight saving time
        tuple(OpenHours(day, "00:00", "24:00") for day in Weekday),
        ("2026-01-01",),
    )
    # 31 December 2025 at 16:00 UTC is already 1 January 01:00 in Tokyo.
    assert is_open(hours, utc_ms(2025, 12, 31, 14, 59))  # 23:59 on 31 December in Tokyo
    assert not is_open(hours, utc_ms(2025, 12, 31, 16))
    assert not is_open(hours, utc_ms(2026, 1, 1, 14, 59))  # 23:59 on 1 January in Tokyo
    assert is_open(hours, utc_ms(2026, 1, 1, 15))  # 2 January in Tokyo


def test_spring_forward_in_paris() -> None:
    # Sunday 29 March 2026 at 01:00 UTC, Paris goes from UTC+1 to UTC+2 (02:00 -> 03:00).
    sunday = BusinessHours("Europe/Paris", (OpenHours(Weekday.SUNDAY, "09:00", "10:00"),))
    # The Sunday before, 08:30 UTC is 09:30 local: open.
    assert is_open(sunday, utc_ms(2026, 3, 22, 8, 30))
    # After the change the same UTC time is 10:30 local: closed; 07:30 UTC is 09:30 local.
    assert not is_open(sunday, utc_ms(2026, 3, 29, 8, 30))
    assert is_open(sunday, utc_ms(2026, 3, 29, 7, 30))
    assert not is_open(sunday, utc_ms(2026, 3, 29, 6, 59))  # 08:59 local


def test_the_skipped_hour_never_comes_and_the_repeated_hour_counts_twice() -> None:
    night = BusinessHours("Europe/Paris", (OpenHours(Weekday.SUNDAY, "02:00", "03:00"),))
    # 29 March 2026: 00:59 UTC is 01:59 local, and one minute later it is 03:00 local.
    assert not is_open(night, utc_ms(2026, 3, 29, 0, 59))
    assert not is_open(night, utc_ms(2026, 3, 29, 1, 0))
    # 25 October 2026 at 01:00 UTC, Paris goes back from 03:00 to 02:00: 02:30 local happens at
    # 00:30 UTC (summer time) and again at 01:30 UTC (winter time).
    assert is_open(night, utc_ms(2026, 10, 25, 0, 30))
    assert is_open(night, utc_ms(2026, 10, 25, 1, 30))
    assert not is_open(night, utc_ms(2026, 10, 25, 2, 0))  # 03:00 local


def test_equal_calendars_answer_alike() -> None:
    copy = dataclasses.replace(OFFICE, weekly=tuple(OFFICE.weekly))
    for now_ms in range(utc_ms(2026, 1, 5, 0), utc_ms(2026, 1, 12, 0), 3_600_000):
        assert is_open(copy, now_ms) is is_open(OFFICE, now_ms)


def test_an_unchecked_impossible_calendar_is_refused_not_guessed() -> None:
    with pytest.raises(InvalidArgument, match="Mars/Olympus"):
        is_open(BusinessHours("Mars/Olympus", OFFICE.weekly), 0)


# -- against a reference: minute of the week in a fixed-offset zone ------------------------------


@st.composite
def weekly_hours(draw: st.DrawFn) -> tuple[OpenHours, ...]:
    """Non-overlapping intervals (in a shuffled order): cut points of each day taken in pairs."""
    intervals: list[OpenHours] = []
    for day in Weekday:
        cuts = sorted(draw(st.sets(st.integers(0, 1440), max_size=6)))
        for opens, closes in zip(cuts[::2], cuts[1::2], strict=False):
            if opens < 1440:
                intervals.append(OpenHours(day, hhmm(opens), hhmm(closes)))
    if not intervals:
        intervals.append(OpenHours(Weekday.MONDAY, "00:00", "00:01"))
    return tuple(draw(st.permutations(intervals)))


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def reference_is_open(weekly: tuple[OpenHours, ...], now_ms: int, offset_h: int) -> bool:
    """Open by plain arithmetic: 1 January 1970 was a Thursday (weekday 3, Monday being 0)."""
    local_minutes = now_ms // 60_000 + offset_h * 60
    days, minute = divmod(local_minutes, 1440)
    day = list(Weekday)[(days + 3) % 7]
    return any(
        interval.day is day
        and int(interval.opens[:2]) * 60 + int(interval.opens[3:])
        <= minute
        < int(interval.closes[:2]) * 60 + int(interval.closes[3:])
        for interval in weekly
    )


@given(
    weekly=weekly_hours(),
    now_ms=st.integers(utc_ms(2000, 1, 1, 0), utc_ms(2100, 1, 1, 0)),
    offset_h=st.sampled_from([0, 5, -8, 14]),
)
def test_matches_minute_of_the_week_arithmetic(
    weekly: tuple[OpenHours, ...], now_ms: int, offset_h: int
) -> None:
    # POSIX spells offsets backwards: Etc/GMT-5 is UTC+5.
    zone = "UTC" if offset_h == 0 else f"Etc/GMT{-offset_h:+d}"
    hours = BusinessHours(zone, weekly)
    check_business_hours("queue.business_hours", hours)
    assert is_open(hours, now_ms) is reference_is_open(weekly, now_ms, offset_h)


# -- impossible calendars -----------------------------------------------------------------------

NINE_TO_FIVE = OpenHours(Weekday.MONDAY, "09:00", "17:00")


def calendar(
    time_zone: str = "Europe/Paris",
    weekly: tuple[OpenHours, ...] = (NINE_TO_FIVE,),
    holidays: tuple[str, ...] = (),
) -> BusinessHours:
    return BusinessHours(time_zone, weekly, holidays)


def refused_field(hours: BusinessHours) -> str:
    with pytest.raises(InvalidArgument) as caught:
        check_business_hours("queue.business_hours", hours)
    assert caught.value.message.startswith(f"{caught.value.field}: ")
    return caught.value.field


@pytest.mark.parametrize(
    "time_zone",
    ["", "Mars/Olympus", "Europe/paris", "../../etc/passwd", "/etc/localtime", "UTC+2", " UTC"],
)
def test_unknown_or_malformed_time_zone(time_zone: str) -> None:
    assert refused_field(calendar(time_zone=time_zone)) == "queue.business_hours.time_zone"


def test_a_miscased_time_zone_gets_a_suggestion() -> None:
    with pytest.raises(InvalidArgument, match="did you mean 'Europe/Paris'"):
        check_business_hours("queue.business_hours", calendar(time_zone="europe/paris"))


@pytest.mark.parametrize(
    ("opens", "closes", "field"),
    [
        ("9:00", "17:00", "opens"),
        ("09:00:00", "17:00", "opens"),
        ("0900", "17:00", "opens"),
        ("24:00", "24:00", "opens"),
        ("09:60", "17:00", "opens"),
        ("-1:00", "17:00", "opens"),
        ("\uff10\uff19:\uff10\uff10", "17:00", "opens"),  # full-width digits
        ("09:00", "24:01", "closes"),
        ("09:00", "25:00", "closes"),
        ("09:00", "17:5", "closes"),
        ("00:00", "00:00", "closes"),
        ("17:00", "09:00", "closes"),
        ("09:00", "09:00", "closes"),
        ("22:00", "02:00", "closes"),
    ],
)
def test_malformed_or_empty_interval(opens: str, closes: str, field: str) -> None:
    weekly = (NINE_TO_FIVE, OpenHours(Weekday.TUESDAY, opens, closes))
    assert refused_field(calendar(weekly=weekly)) == f"queue.business_hours.weekly[1].{field}"


def test_extreme_valid_times() -> None:
    check_business_hours(
        "queue.business_hours",
        calendar(
            weekly=(
                OpenHours(Weekday.MONDAY, "00:00", "00:01"),
                OpenHours(Weekday.MONDAY, "23:59", "24:00"),
                OpenHours(Weekday.TUESDAY, "00:00", "24:00"),
            )
        ),
    )


@pytest.mark.parametrize(
    ("later", "overlapped"),
    [
        (OpenHours(Weekday.MONDAY, "16:59", "18:00"), 0),
        (OpenHours(Weekday.MONDAY, "08:00", "09:01"), 0),
        (OpenHours(Weekday.MONDAY, "10:00", "11:00"), 0),  # inside
        (OpenHours(Weekday.MONDAY, "00:00", "24:00"), 0),  # around
        (OpenHours(Weekday.MONDAY, "09:00", "17:00"), 0),  # repeated
    ],
)
def test_overlapping_intervals_of_a_day(later: OpenHours, overlapped: int) -> None:
    weekly = (NINE_TO_FIVE, OpenHours(Weekday.TUESDAY, "09:00", "17:00"), later)
    with pytest.raises(InvalidArgument) as caught:
        check_business_hours("queue.business_hours", calendar(weekly=weekly))
    assert caught.value.field == "queue.business_hours.weekly[2]"
    assert f"overlaps weekly[{overlapped}] (monday 09:00-17:00)" in caught.value.message


def test_touching_intervals_and_the_same_hours_on_other_days_are_fine() -> None:
    weekly = (
        NINE_TO_FIVE,
        OpenHours(Weekday.MONDAY, "17:00", "20:00"),
        OpenHours(Weekday.MONDAY, "08:00", "09:00"),
        OpenHours(Weekday.TUESDAY, "09:00", "17:00"),
    )
    check_business_hours("queue.business_hours", calendar(weekly=weekly))


def test_a_calendar_that_never_opens() -> None:
    assert refused_field(calendar(weekly=())) == "queue.business_hours.weekly"


def test_too_many_intervals() -> None:
    weekly = tuple(
        OpenHours(Weekday.MONDAY, hhmm(2 * i), hhmm(2 * i + 1))
        for i in range(OPEN_HOURS_PER_CALENDAR_MAX + 1)
    )
    check_business_hours("queue.business_hours", calendar(weekly=weekly[:-1]))
    assert refused_field(calendar(weekly=weekly)) == "queue.business_hours.weekly"


@pytest.mark.parametrize(
    "holiday",
    ["2026-02-30", "2026-13-01", "2026-00-10", "26-05-01", "20260501", "2026-W18-5", "", "1 May"],
)
def test_holiday_not_a_date(holiday: str) -> None:
    hours = calendar(holidays=("2026-01-01", holiday))
    assert refused_field(hours) == "queue.business_hours.holidays[1]"


def test_repeated_holiday() -> None:
    hours = calendar(holidays=("2026-01-01", "2026-05-01", "2026-01-01"))
    with pytest.raises(InvalidArgument, match=r"repeats holidays\[0\]") as caught:
        check_business_hours("queue.business_hours", hours)
    assert caught.value.field == "queue.business_hours.holidays[2]"


def test_too_many_holidays() -> None:
    dates = [
        datetime.fromordinal(datetime(2000, 1, 1).toordinal() + i).date().isoformat()
        for i in range(HOLIDAYS_PER_CALENDAR_MAX + 1)
    ]
    check_business_hours("queue.business_hours", calendar(holidays=tuple(dates[:-1])))
    assert refused_field(calendar(holidays=tuple(dates))) == "queue.business_hours.holidays"


def test_the_field_prefix_is_the_callers() -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_business_hours("calendar", calendar(time_zone="Nowhere"))
    assert caught.value.field == "calendar.time_zone"
