"""CSV export cells: a value a spreadsheet would run as a formula is written as text."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from clickloop.http.csvexport import csv_rows


def written_cell(value: object) -> str:
    """The one cell `value` becomes, read back as a spreadsheet would parse the CSV."""
    text = "".join(csv_rows(iter([{"x": value}]), ("x",)))
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["x"] and len(rows) == 2
    return rows[1][0]


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        # OWASP's list: =, +, -, @, TAB (0x09) and CR (0x0D) at the start of a cell.
        ("=1+1", "'=1+1"),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("\t", "'\t"),
        ("\rtext", "'\rtext"),
        # Leading whitespace some spreadsheets strip before reading a formula.
        (" =1+1", "' =1+1"),
        ("\n=1+1", "'\n=1+1"),
        ("  \t -1+2", "'  \t -1+2"),
        (" @A1", "' @A1"),
        # Full-width signs that some spreadsheets read as their ASCII forms.
        ("\uff1d1+1", "'\uff1d1+1"),
        # Numbers stay numbers; harmless text stays as it is.
        ("-1.50", "-1.50"),
        ("+3", "+3"),
        ("-1E+2", "-1E+2"),
        (Decimal("-12.5"), "-12.5"),
        (-7, "-7"),
        ("-Infinity", "'-Infinity"),
        (" -1", "' -1"),
        ("plain a=b", "plain a=b"),
        ("", ""),
        (None, ""),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05+00:00"),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_evaluate_are_neutralised(
    value: object, cell: str
) -> None:
    """A formula-leading cell, even behind a TAB, CR or whitespace, is prefixed with a quote."""
    assert written_cell(value) == cell
