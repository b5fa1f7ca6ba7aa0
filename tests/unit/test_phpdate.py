"""PHP `date()` letters, checked against values printed by PHP 8.2's DateTime::format."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest

from clickloop.domain.phpdate import format_php_date, to_unix_seconds


def make_datetime(utc_text: str, zone: str) -> datetime:
    """The UTC instant `utc_text` seen in `zone` (an IANA name or a fixed `+HH:MM` offset)."""
    instant = datetime.fromisoformat(utc_text).replace(tzinfo=UTC)
    target: tzinfo
    if zone[0] in "+-":
        hours, minutes = zone[1:].split(":")
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        target = timezone(-delta if zone[0] == "-" else delta)
    else:
        target = ZoneInfo(zone)
    return instant.astimezone(target)


@pytest.mark.parametrize(
    ("utc_text", "zone", "fmt", "expected"),
    [
        ("2024-03-05 12:34:56.789012", "UTC", "U", "1709642096"),
        ("2024-03-05 12:34:56.789012", "UTC", "Y-m-d H:i:s", "2024-03-05 12:34:56"),
        ("2024-03-05 12:34:56.789012", "UTC", "c", "2024-03-05T12:34:56+00:00"),
        ("2024-03-05 12:34:56.789012", "Europe/Kyiv", "c", "2024-03-05T14:34:56+02:00"),
        ("2024-03-05 12:34:56.789012", "UTC", "D, d M Y", "Tue, 05 Mar 2024"),
        ("2024-03-05 12:34:56.789012", "Asia/Kolkata", "r", "Tue, 05 Mar 2024 18:04:56 +0530"),
        ("2024-03-04 00:00:00", "UTC", "N l w", "1 Monday 1"),
        ("2024-03-10 00:00:00", "UTC", "N l w", "7 Sunday 0"),
        ("2024-03-01 00:00:00", "UTC", "jS", "1st"),
        ("2024-03-02 00:00:00", "UTC", "jS", "2nd"),
        ("2024-03-03 00:00:00", "UTC", "jS", "3rd"),
        ("2024-03-04 00:00:00", "UTC", "jS", "4th"),
        ("2024-03-11 00:00:00", "UTC", "jS", "11th"),
        ("2024-03-12 00:00:00", "UTC", "jS", "12th"),
        ("2024-03-13 00:00:00", "UTC", "jS", "13th"),
        ("2024-03-21 00:00:00", "UTC", "jS", "21st"),
        ("2024-03-22 00:00:00", "UTC", "jS", "22nd"),
        ("2024-03-23 00:00:00", "UTC", "jS", "23rd"),
        ("2024-03-31 00:00:00", "UTC", "jS", "31st"),
        ("2024-03-05 12:34:56", "UTC", "\\Y\\m\\d Y", "Ymd 2024"),
        ("2024-03-05 12:34:56", "UTC", "\\\\Y", "\\2024"),
        ("2024-03-05 12:34:56", "UTC", "{Y}-{{m}}", "{2024}-{{03}}"),
        ("2024-03-05 12:34:56", "UTC", "k q J", "k q J"),
        (
            "2024-01-15 12:00:00",
            "America/New_York",
            "Y-m-d H:i:s T I O P p e Z",
            "2024-01-15 07:00:00 EST 0 -0500 -05:00 -05:00 America/New_York -18000",
        ),
        (
            "2024-07-15 12:00:00",
            "America/New_York",
            "Y-m-d H:i:s T I O P p e Z",
            "2024-07-15 08:00:00 EDT 1 -0400 -04:00 -04:00 America/New_York -14400",
        ),
        ("2024-03-31 00:59:59", "Europe/Kyiv", "H:i T I", "02:59 EET 0"),
        ("2024-03-31 01:00:00", "Europe/Kyiv", "H:i T I", "04:00 EEST 1"),
        ("2024-01-15 12:00:00", "Europe/London", "p T", "+00:00 GMT"),
        ("2024-01-15 12:00:00", "UTC", "p T e", "Z UTC UTC"),
        ("2020-12-31 12:00:00", "UTC", "W o Y z", "53 2020 2020 365"),
        ("2021-01-03 12:00:00", "UTC", "W o Y z", "53 2020 2021 2"),
        ("2024-12-30 12:00:00", "UTC", "W o Y z", "01 2025 2024 364"),
        ("2024-02-10 12:00:00", "UTC", "t L", "29 1"),
        ("2023-02-10 12:00:00", "UTC", "t L", "28 0"),
        ("2024-03-05 00:05:00", "UTC", "a A g G h H", "am AM 12 0 12 00"),
        ("2024-03-05 12:05:00", "UTC", "a A g G h H", "pm PM 12 12 12 12"),
        ("2024-03-05 23:05:00", "UTC", "a A g G h H", "pm PM 11 23 11 23"),
        ("2024-03-05 12:34:56.789012", "UTC", "u v B", "789012 789 565"),
        ("2024-03-05 12:34:56", "UTC", "F M n m j d y X x", "March Mar 3 03 5 05 24 +2024 2024"),
        ("1969-12-31 23:59:59.5", "UTC", "U", "-1"),
        ("2024-03-05 12:34:56", "+03:00", "e T P", "+03:00 GMT+0300 +03:00"),
        ("2024-03-05 12:34:56", "Asia/Kathmandu", "O P Z", "+0545 +05:45 20700"),
    ],
)
def test_format_matches_php(utc_text: str, zone: str, fmt: str, expected: str) -> None:
    """Each format renders exactly what PHP 8.2 printed for the same instant and zone."""
    assert format_php_date(make_datetime(utc_text, zone), fmt) == expected


def test_naive_datetime_is_utc() -> None:
    """A naive datetime is formatted as UTC, never as the machine's local time."""
    naive = datetime(2024, 3, 5, 12, 34, 56)
    assert format_php_date(naive, "U e H") == "1709642096 UTC 12"


def test_trailing_backslash_is_dropped() -> None:
    """A lone trailing backslash yields nothing (PHP would emit a NUL byte into the URL)."""
    assert format_php_date(datetime(2024, 3, 5, tzinfo=UTC), "Y\\") == "2024"


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(1970, 1, 1, tzinfo=UTC), 0),
        (datetime(2024, 3, 5, 14, 34, 56, 999999, tzinfo=ZoneInfo("Europe/Kyiv")), 1709642096),
        (datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC), -1),
        (datetime(2024, 3, 5, 12, 34, 56), 1709642096),
    ],
)
def test_unix_seconds_round_down(moment: datetime, expected: int) -> None:
    """Unix seconds drop the fraction downwards, like PHP's `U`, and treat naive as UTC."""
    assert to_unix_seconds(moment) == expected


ALL_LETTERS = "dDjlNSwzWFmMntLoXxYyaABgGhHisuveIOPpTZcrU"
ZONES = ("UTC", "Europe/Kyiv", "America/St_Johns", "Australia/Lord_Howe", "Pacific/Chatham")


@pytest.mark.skipif(shutil.which("php") is None, reason="needs the php command to compare with")
def test_every_letter_matches_php_on_random_instants() -> None:
    """Every letter agrees with the local PHP on 300 random instants in zones with odd offsets."""
    rng = random.Random(20240305)
    fmt = "|".join(ALL_LETTERS)
    cases = []
    for _ in range(300):
        seconds = rng.randint(-2_000_000_000, 4_000_000_000)
        micro = rng.randint(0, 999_999)
        zone = rng.choice(ZONES)
        moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=micro)
        expected = format_php_date(moment.astimezone(ZoneInfo(zone)), fmt)
        cases.append([f"{seconds}.{micro:06d}", zone, expected])
    script = (
        "$fmt = $argv[1]; $bad = [];"
        "foreach (json_decode(stream_get_contents(STDIN)) as [$u, $tz, $want]) {"
        "  $dt = DateTime::createFromFormat('U.u', $u);"
        "  $dt->setTimezone(new DateTimeZone($tz));"
        "  if ($dt->format($fmt) !== $want) { $bad[] = [$u, $tz, $dt->format($fmt), $want]; }"
        "}"
        "echo json_encode($bad);"
    )
    result = subprocess.run(
        ["php", "-r", script, fmt],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout) == []
