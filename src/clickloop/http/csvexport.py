"""CSV exports (conversions, reports) shared by the API and the admin UI, safe to open in a
spreadsheet."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

CONVERSION_CSV_COLUMNS = (
    "id",
    "subid",
    "tid",
    "type",
    "original_status",
    "payout",
    "currency",
    "original_payout",
    "original_currency",
    "rate",
    "cost",
    "campaign_id",
    "offer_id",
    "traffic_source_id",
    "converted_at",
    "created_at",
    "updated_at",
)
REPORT_CSV_COLUMNS = (
    "key",
    "label",
    "clicks",
    "conversions",
    "revenue",
    "cost",
    "profit",
    "roi",
    "cr",
    "epc",
)


def csv_rows(rows: Iterator[dict[str, Any]], columns: tuple[str, ...]) -> Iterator[str]:
    """The header line, then one line per row, as text chunks for a streaming response."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(column)) for column in columns])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _csv_cell(value: Any) -> str:
    text = "" if value is None else value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text if _FORMULA_START.match(text) and not _NUMBER.fullmatch(text) else text


# OWASP's CSV injection list: a cell starting with =, +, -, @, TAB or CR runs as a formula.
# Spreadsheets may strip leading whitespace first, and some read full-width signs as ASCII.
_FORMULA_START = re.compile("[\t\r]|\\s*[=+\\-@\uff1d\uff0b\uff0d\uff20]")
# What we write for amounts and rates (str of a Decimal or int): left as a number.
_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?(?:E[+-]?[0-9]+)?")
