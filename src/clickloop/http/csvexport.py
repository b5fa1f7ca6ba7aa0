"""CSV exports (conversions, reports) shared by the API and the admin UI, safe to open in a
spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
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
    # A leading =, +, - or @ makes spreadsheets run the cell as a formula (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True
