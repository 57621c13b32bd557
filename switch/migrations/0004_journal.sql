-- The transaction journal: every terminal request and its response, masked, with its outcome.
-- Source for settlement, reconciliation, disputes and `switchctl txn show`. No clear PAN, track data,
-- PIN block, MAC or key: requests and responses are stored with those fields masked or removed.

CREATE TABLE journal (
    journal_id       bigserial PRIMARY KEY,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    business_date    date NOT NULL,
    node_name        text NOT NULL,
    terminal_id      text NOT NULL,
    merchant_id      text NOT NULL,
    stan             text NOT NULL,
    transmission     text NOT NULL,          -- field 7, MMDDhhmmss
    mti              text NOT NULL,
    processing_code  text NOT NULL,
    transaction_type text NOT NULL,
    rrn              text NOT NULL,
    auth_code        text NOT NULL DEFAULT '',
    pan_masked       text NOT NULL DEFAULT '',
    amount           bigint,
    currency         smallint,
    result           text NOT NULL,
    response_code    text NOT NULL,
    route            text NOT NULL,
    transfer_id      text,
    latency_us       integer NOT NULL,
    request          jsonb NOT NULL,
    response         jsonb NOT NULL
);

CREATE INDEX journal_rrn ON journal (rrn);
CREATE INDEX journal_identity ON journal (terminal_id, stan, transmission);
CREATE INDEX journal_business_date ON journal (business_date);
