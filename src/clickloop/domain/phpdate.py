"""PHP `date()` formatting, for Keitaro's `{date:FORMAT,TZ}` macros.

Formats an aware datetime in its own time zone; a naive one is taken as UTC.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_FIELDS = {
    "d": "{0.day:02d}",
    "j": "{0.day}",
    "m": "{0.month:02d}",
    "n": "{0.month}",
    "Y": "{0.year:04d}",
    "G": "{0.hour}",
    "H": "{0.hour:02d}",
    "i": "{0.minute:02d}",
    "s": "{0.second:02d}",
    "u": "{0.microsecond:06d}",
}
_EXPANSIONS = {"c": "Y-m-d\\TH:i:sP", "r": "D, d M Y H:i:s O"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def format_php_date(dt: datetime, fmt: str) -> str:
    """Format `dt` like PHP's `date(fmt)`; unknown letters pass through, `\\X` is a literal X.

    A trailing lone backslash is dropped (PHP would emit a NUL byte). `X`/`x` follow PHP 8.2.
    """
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    template, getters = _compile(fmt)
    if not getters:
        return template.format(dt)
    return template.format(dt, *[getter(dt) for getter in getters])


def to_unix_seconds(dt: datetime) -> int:
    """Whole seconds since the epoch, rounded down like PHP's `U`; a naive `dt` is UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _SECOND


@lru_cache(maxsize=256)
def _compile(fmt: str) -> tuple[str, tuple[Callable[[datetime], str], ...]]:
    # One str.format() call per render: plain fields are read as attributes of argument 0, the
    # other letters are computed by getters into arguments 1..n. Parsed once per format.
    pieces: list[str] = []
    getters: list[Callable[[datetime], str]] = []
    _compile_into(fmt, pieces, getters)
    return "".join(pieces), tuple(getters)


def _compile_into(fmt: str, pieces: list[str], getters: list[Callable[[datetime], str]]) -> None:
    chars = iter(fmt)
    for ch in chars:
        if ch == "\\":
            pieces.append(_escape_braces(next(chars, "")))
        elif ch in _FIELDS:
            pieces.append(_FIELDS[ch])
        elif ch in _EXPANSIONS:
            _compile_into(_EXPANSIONS[ch], pieces, getters)
        elif ch in _LETTERS:
            getters.append(_LETTERS[ch])
            pieces.append(f"{{{len(getters)}}}")
        else:
            pieces.append(_escape_braces(ch))


def _escape_braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _offset_seconds(dt: datetime) -> int:
    offset = dt.utcoffset()
    return 0 if offset is None else int(offset.total_seconds())


def _format_offset(dt: datetime, sep: str) -> str:
    seconds = _offset_seconds(dt)
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    return f"{sign}{hours:02d}{sep}{rest // 60:02d}"


def _format_p(dt: datetime) -> str:
    # PHP prints "Z" only for UTC itself: London in winter is "+00:00".
    return "Z" if _format_zone_abbreviation(dt) == "UTC" else _format_offset(dt, ":")


def _format_zone_id(dt: datetime) -> str:
    tz = dt.tzinfo
    if isinstance(tz, ZoneInfo):
        return tz.key
    if isinstance(tz, timezone) and _offset_seconds(dt) == 0:
        return "UTC"
    return _format_offset(dt, ":")


def _format_zone_abbreviation(dt: datetime) -> str:
    tz = dt.tzinfo
    if isinstance(tz, ZoneInfo):
        return dt.tzname() or _format_offset(dt, ":")
    if _format_zone_id(dt) == "UTC":
        return "UTC"
    # PHP names a bare offset "GMT+0300", where Python would say "UTC+03:00".
    return "GMT" + _format_offset(dt, "")


def _format_suffix(dt: datetime) -> str:
    day = dt.day
    if day in (11, 12, 13):
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _format_hour12(dt: datetime) -> int:
    return dt.hour % 12 or 12


def _format_swatch(dt: datetime) -> str:
    # Swatch Internet Time: 1000 beats a day, counted from midnight in UTC+1.
    beats = ((to_unix_seconds(dt) % 86400 + 3600) * 10 // 864) % 1000
    return f"{beats:03d}"


def _format_expanded_year(dt: datetime, *, always_sign: bool) -> str:
    year = dt.year
    if always_sign or year >= 10000:
        return f"+{year:04d}"
    return f"{year:04d}"


_LETTERS: dict[str, Callable[[datetime], str]] = {
    # day
    "D": lambda dt: _DAYS[dt.weekday()][:3],
    "l": lambda dt: _DAYS[dt.weekday()],
    "N": lambda dt: str(dt.isoweekday()),
    "S": _format_suffix,
    "w": lambda dt: str(dt.isoweekday() % 7),
    "z": lambda dt: str(dt.timetuple().tm_yday - 1),
    # week
    "W": lambda dt: f"{dt.isocalendar().week:02d}",
    # month
    "F": lambda dt: _MONTHS[dt.month - 1],
    "M": lambda dt: _MONTHS[dt.month - 1][:3],
    "t": lambda dt: str(calendar.monthrange(dt.year, dt.month)[1]),
    # year
    "L": lambda dt: "1" if calendar.isleap(dt.year) else "0",
    "o": lambda dt: str(dt.isocalendar().year),
    "X": lambda dt: _format_expanded_year(dt, always_sign=True),
    "x": lambda dt: _format_expanded_year(dt, always_sign=False),
    "y": lambda dt: f"{dt.year % 100:02d}",
    # time
    "a": lambda dt: "am" if dt.hour < 12 else "pm",
    "A": lambda dt: "AM" if dt.hour < 12 else "PM",
    "B": _format_swatch,
    "g": lambda dt: str(_format_hour12(dt)),
    "h": lambda dt: f"{_format_hour12(dt):02d}",
    "v": lambda dt: f"{dt.microsecond // 1000:03d}",
    # time zone
    "e": _format_zone_id,
    "I": lambda dt: "1" if dt.dst() else "0",
    "O": lambda dt: _format_offset(dt, ""),
    "P": lambda dt: _format_offset(dt, ":"),
    "p": _format_p,
    "T": _format_zone_abbreviation,
    "Z": lambda dt: str(_offset_seconds(dt)),
    "U": lambda dt: str(to_unix_seconds(dt)),
}
