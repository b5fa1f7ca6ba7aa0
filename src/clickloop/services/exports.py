"""Conversions for the ad platforms that take files, not requests: Google Ads' offline
conversion import (conversions by gclid), the way Keitaro users feed Google without OAuth."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.engine import Engine

from clickloop.domain.macros import format_value
from clickloop.errors import InvalidInput
from clickloop.storage import tables as t
from clickloop.storage.db import reader_engine

# The header row of Google's template ("Import conversions from ad clicks into Google Ads").
GOOGLE_ADS_COLUMNS = (
    "Google Click ID",
    "Conversion Name",
    "Conversion Time",
    "Conversion Value",
    "Conversion Currency",
)
DEFAULT_STATUSES = ("sale",)
DEFAULT_DAYS = 7
MAX_DAYS = 366
# A gclid is URL-safe base64; anything else in the parameter is not one (and could be a
# spreadsheet formula in a file that Google Sheets opens).
_GCLID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,199}")


@dataclass(frozen=True, slots=True, kw_only=True)
class GoogleAdsExport:
    """What to export: the conversion action's name, the period and the conversion types."""

    conversion_name: str
    date_from: date
    date_to: date
    timezone: str
    statuses: tuple[str, ...] = DEFAULT_STATUSES
    campaign_id: int | None = None


def google_ads_export(
    *,
    conversion_name: str | None,
    date_from: date | None,
    date_to: date | None,
    timezone: str,
    statuses: Sequence[str] | str | None = None,
    campaign_id: int | None = None,
    today: date,
) -> GoogleAdsExport:
    """Validate an export request (InvalidInput names the field); the period defaults to the
    last 7 days, today included, in the report time zone."""
    name = (conversion_name or "").strip()
    if not name or len(name) > 100 or re.search(r"[\x00-\x1f\x7f]", name):
        raise InvalidInput("conversion_name", "required: the Google Ads conversion action's name")
    date_to = date_to or today
    date_from = date_from or date_to - timedelta(days=DEFAULT_DAYS - 1)
    if date_from > date_to:
        raise InvalidInput("from", "on or before to")
    if (date_to - date_from).days >= MAX_DAYS:
        raise InvalidInput("from", f"a period of at most {MAX_DAYS} days")
    if isinstance(statuses, str):
        statuses = statuses.split(",")
    chosen = tuple(s.strip().lower() for s in (statuses or DEFAULT_STATUSES) if s.strip())
    if any(not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", s) for s in chosen):
        raise InvalidInput("statuses", "conversion types separated by commas")
    return GoogleAdsExport(
        conversion_name=name,
        date_from=date_from,
        date_to=date_to,
        timezone=timezone,
        statuses=chosen or DEFAULT_STATUSES,
        campaign_id=campaign_id,
    )


def google_ads_rows(engine: Engine, export: GoogleAdsExport) -> Iterator[dict[str, Any]]:
    """One row per conversion whose click came with a gclid, oldest first, keyed by
    `GOOGLE_ADS_COLUMNS`. Times carry their UTC offset (`2026-11-01 14:05:09+00:00`), so the
    file needs no `Parameters:TimeZone` line."""
    zone = ZoneInfo(export.timezone)
    since = datetime.combine(export.date_from, time(), zone).astimezone(UTC)
    until = datetime.combine(export.date_to + timedelta(days=1), time(), zone).astimezone(UTC)
    cv = t.conversions.c
    gclid = t.clicks.c.extra["gclid"].as_string()
    query = (
        select(gclid, cv.converted_at, cv.payout, cv.currency)
        .select_from(t.conversions.join(t.clicks, t.clicks.c.subid == cv.subid))
        .where(
            cv.converted_at >= since,
            cv.converted_at < until,
            cv.type.in_(export.statuses),
            gclid.is_not(None),
        )
        .order_by(cv.converted_at, cv.id)
    )
    if export.campaign_id is not None:
        query = query.where(cv.campaign_id == export.campaign_id)
    with reader_engine(engine).connect() as conn:
        for click_id, converted_at, payout, currency in conn.execute(
            query.execution_options(yield_per=1000)
        ):
            if not isinstance(click_id, str) or not _GCLID.fullmatch(click_id):
                continue
            yield {
                "Google Click ID": click_id,
                "Conversion Name": export.conversion_name,
                "Conversion Time": converted_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00:00"),
                "Conversion Value": format_value(payout),
                "Conversion Currency": currency,
            }
