"""Cron schedules as Kubernetes reads them (github.com/robfig/cron/v3 `ParseStandard`), and their next times.

Five fields, `minute hour day-of-month month day-of-week`, each a list of `*`, `?`, `N`, `N-M`, with an optional
`/step` (`N/step` means `N-max/step`); months and weekdays also by name (`JAN`, `mon`); or a descriptor
(`@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly`, `@every 1h30m`). As in robfig,
when both day fields are restricted a day matches either of them, otherwise it must match both. The parse
errors are robfig's texts, which kube-apiserver quotes in its validation message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_BOUNDS = ((0, 59, {}), (0, 23, {}), (1, 31, {}),
           (1, 12, {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep",
                                                    "oct", "nov", "dec"))}),
           (0, 6, {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}))
_DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


class CronError(ValueError):
    """A schedule robfig/cron refuses; the message is robfig's."""


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool  # day-of-month or day-of-week was `*`/`?`: a day must then match both fields
    every: timedelta | None = None  # `@every`: a constant delay instead of fields

    def next_after(self, t: datetime) -> datetime | None:
        """The first activation strictly after `t` (in t's time zone), None if there is none within 5 years."""
        if self.every is not None:
            base = t.replace(microsecond=0) + self.every
            return base - timedelta(microseconds=base.microsecond)
        start = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for _ in range(366 * 5):
            if day.month in self.months and self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day = (day + timedelta(days=1)).replace(hour=0, minute=0)
        return None

    def _day_matches(self, day: datetime) -> bool:
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        return (dom and dow) if self.any_day else (dom or dow)


def _parse_int(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text):
        raise CronError(f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


def _value(text: str, names: dict[str, int]) -> int:
    return names[text.lower()] if text.lower() in names else _parse_int(text)


def _range(expr: str, lo: int, hi: int, names: dict[str, int]) -> tuple[set[int], bool]:
    """One comma-separated part: its values, and whether it was a star (robfig's starBit)."""
    range_and_step = expr.split("/")
    low_high = range_and_step[0].split("-")
    star = False
    if low_high[0] in ("*", "?"):
        start, end, star = lo, hi, True
    else:
        start = _value(low_high[0], names)
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = _value(low_high[1], names)
        else:
            raise CronError(f"too many hyphens: {expr}")
    step = 1
    if len(range_and_step) == 2:
        step = _parse_int(range_and_step[1])
        if len(low_high) == 1 and not star:
            end = hi  # "N/step" means "N-max/step"
        if step > 1:
            star = False
    elif len(range_and_step) > 2:
        raise CronError(f"too many slashes: {expr}")
    if start < lo:
        raise CronError(f"beginning of range ({start}) below minimum ({lo}): {expr}")
    if end > hi:
        raise CronError(f"end of range ({end}) above maximum ({hi}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}")
    return set(range(start, end + 1, step)), star


def _go_duration(text: str) -> timedelta:
    if not text or _DURATION_PART.sub("", text) != "":
        raise CronError(f'failed to parse duration @every {text}: time: invalid duration "{text}"')
    return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text)))


def parse(spec: str) -> Schedule:
    """Parse a standard cron spec; raises CronError with robfig's message."""
    if not spec:
        raise CronError("empty spec string")
    if spec.startswith("@every "):
        every = _go_duration(spec[len("@every "):].strip())
        if every < timedelta(seconds=1):
            every = timedelta(seconds=1)
        full = frozenset[int]()
        return Schedule(full, full, full, full, full, True, every)
    if spec.startswith("@"):
        if spec not in _DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {spec}")
        spec = _DESCRIPTORS[spec]
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    sets: list[set[int]] = []
    stars: list[bool] = []
    for text, (lo, hi, names) in zip(fields, _BOUNDS, strict=True):
        values: set[int] = set()
        star = False
        for part in text.split(","):
            got, part_star = _range(part, lo, hi, names)
            values |= got
            star = star or part_star
        sets.append(values)
        stars.append(star)
    return Schedule(*(frozenset(s) for s in sets), any_day=stars[2] or stars[4])
