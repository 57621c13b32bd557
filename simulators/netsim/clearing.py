"""The clearing file: one CSV per business date of what the network approved, reversed and applied.

`<var-dir>/<network>/clearing-YYYYMMDD.csv`, columns `COLUMNS`, one line per approved request, applied
reversal and applied advice, as issuer or as acquirer; the settlement work reads it. PANs are masked
(first 6 + last 4) when the record is made, so no clear PAN ever reaches the file. A reversal's amount is
what it reversed. Lines are appended and flushed as they happen, so a crash loses nothing written.
"""

from __future__ import annotations

import csv
from dataclasses import astuple, dataclass
from datetime import date
from pathlib import Path

from switch.masking import mask_pan

__all__ = ["COLUMNS", "ClearingFile", "ClearingRecord", "clearing_path"]

COLUMNS: tuple[str, ...] = (
    "business_date",
    "role",
    "mti",
    "stan",
    "transmission",
    "rrn",
    "acquirer_id",
    "masked_pan",
    "amount_minor",
    "currency",
    "auth_code",
    "response_code",
)


@dataclass(frozen=True, slots=True)
class ClearingRecord:
    business_date: str  # YYYYMMDD
    role: str  # issuer or acquirer
    mti: str
    stan: str
    transmission: str  # field 7 of the message
    rrn: str
    acquirer_id: str
    masked_pan: str
    amount_minor: int
    currency: int
    auth_code: str
    response_code: str

    @classmethod
    def of(
        cls,
        *,
        business_date: date,
        role: str,
        mti: str,
        stan: str,
        transmission: str,
        rrn: str,
        acquirer_id: str,
        pan: str,
        amount_minor: int,
        currency: int,
        auth_code: str,
        response_code: str,
    ) -> ClearingRecord:
        """A record whose PAN is masked here, the only way one is made from a clear PAN."""
        return cls(
            business_date=business_date.strftime("%Y%m%d"),
            role=role,
            mti=mti,
            stan=stan,
            transmission=transmission,
            rrn=rrn,
            acquirer_id=acquirer_id,
            masked_pan=mask_pan(pan),
            amount_minor=amount_minor,
            currency=currency,
            auth_code=auth_code,
            response_code=response_code,
        )

    def row(self) -> list[str]:
        return [str(value) for value in astuple(self)]


def clearing_path(directory: Path, business_date: str) -> Path:
    return directory / f"clearing-{business_date}.csv"


class ClearingFile:
    """Appends records to the file of their business date (created with a header line)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory  # None: records are counted but not written (tests of other parts)
        self.records_written = 0

    def append(self, record: ClearingRecord) -> None:
        """Write one line now. Synchronous: a line is a few dozen bytes, cheaper than a thread hop."""
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = clearing_path(self.directory, record.business_date)
        new = not path.exists()
        with path.open("a", newline="", encoding="ascii") as out:
            writer = csv.writer(out)
            if new:
                writer.writerow(COLUMNS)
            writer.writerow(record.row())
        self.records_written += 1
