-- Voids and completions that name their original only by RRN (field 37) find it by the transfer's
-- reference ("rrn:<RRN>", written by the authorization pipeline): look it up without a table scan.
CREATE INDEX ledger_transfers_reference ON ledger_transfers (reference);
