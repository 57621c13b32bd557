-- The journal's request and response are written once and read whole (switchctl txn show, settlement
-- extracts), never queried inside: plain json stores the text as it comes, without parsing it into
-- jsonb's binary form on every insert (a measurable share of the database's CPU per transaction).
ALTER TABLE journal ALTER COLUMN request TYPE json USING request::json;
ALTER TABLE journal ALTER COLUMN response TYPE json USING response::json;
