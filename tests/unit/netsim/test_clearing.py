"""Clearing records and files: masked PANs, one header line, one file per business date."""

from __future__ import annotations

import csv
from datetime import date

from simulators.netsim.clearing import COLUMNS, ClearingFile, ClearingRecord

PAN = "4761739001010010"


def record(day: date, amount: int = 100) -> ClearingRecord:
    return ClearingRecord.of(
        business_date=day,
        role="issuer",
        mti="0200",
        stan="000001",
        transmission="0304050607",
        rrn="260630000001",
        acquirer_id="990001",
        pan=PAN,
        amount_minor=amount,
        currency=840,
        auth_code="V00001",
        response_code="00",
    )


def test_record_holds_the_masked_pan_only():
    """If a record is made from a clear PAN, then it keeps first 6 + last 4 only."""
    made = record(date(2026, 3, 4))
    assert made.masked_pan == "476173******0010"
    assert PAN not in repr(made)


def test_file_per_business_date_with_one_header(tmp_path):
    """If records of two dates are appended, then each date has its file with one header line."""
    out = ClearingFile(tmp_path)
    out.append(record(date(2026, 3, 4), 100))
    out.append(record(date(2026, 3, 4), 200))
    out.append(record(date(2026, 3, 5), 300))
    with (tmp_path / "clearing-20260304.csv").open() as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == COLUMNS
    assert [row[COLUMNS.index("amount_minor")] for row in rows[1:]] == ["100", "200"]
    assert (tmp_path / "clearing-20260305.csv").exists()
    assert out.records_written == 3


def test_no_directory_writes_nothing(tmp_path):
    """If the clearing file has no directory, then appending writes no file."""
    ClearingFile(None).append(record(date(2026, 3, 4)))
    assert list(tmp_path.iterdir()) == []
