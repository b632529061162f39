"""Cron schedules as robfig/cron's ParseStandard reads them."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from labkit import cron

T0 = datetime(2025, 3, 14, 10, 7, 30, tzinfo=UTC)  # a Friday


@pytest.mark.parametrize(("spec", "expected"), [
    ("*/1 * * * *", datetime(2025, 3, 14, 10, 8, tzinfo=UTC)),
    ("*/5 * * * *", datetime(2025, 3, 14, 10, 10, tzinfo=UTC)),
    ("0 * * * *", datetime(2025, 3, 14, 11, 0, tzinfo=UTC)),
    ("@hourly", datetime(2025, 3, 14, 11, 0, tzinfo=UTC)),
    ("@daily", datetime(2025, 3, 15, 0, 0, tzinfo=UTC)),
    ("30 9 * * MON-FRI", datetime(2025, 3, 17, 9, 30, tzinfo=UTC)),
    ("0 0 1 JAN *", datetime(2026, 1, 1, 0, 0, tzinfo=UTC)),
    ("0 0 13 * 5", datetime(2025, 3, 21, 0, 0, tzinfo=UTC)),  # both restricted: the 13th OR a Friday
    ("0 0 */10 * *", datetime(2025, 3, 21, 0, 0, tzinfo=UTC)),  # 1, 11, 21, 31
    ("7,8 10 * * *", datetime(2025, 3, 14, 10, 8, tzinfo=UTC)),
])
def test_next_activation(spec: str, expected: datetime) -> None:
    assert cron.parse(spec).next_after(T0) == expected


def test_next_activation_in_a_time_zone() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    nxt = cron.parse("0 9 * * *").next_after(T0.astimezone(tokyo))
    assert nxt == datetime(2025, 3, 15, 9, 0, tzinfo=tokyo)


@pytest.mark.parametrize(("spec", "message"), [
    ("bad", "expected exactly 5 fields, found 1: [bad]"),
    ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
    ("60 * * * *", "end of range (60) above maximum (59): 60"),
    ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
    ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
    ("*/0 * * * *", "step of range should be a positive number: */0"),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
])
def test_parse_errors_are_robfigs(spec: str, message: str) -> None:
    with pytest.raises(cron.CronError) as exc:
        cron.parse(spec)
    assert str(exc.value) == message
