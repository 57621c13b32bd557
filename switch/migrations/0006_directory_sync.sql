-- Operator changes to the card directory (card status, hot list, black list) take effect for the very next
-- request on every switchd, caches or not. NOTIFY alone is not enough: a request can reach a switchd before
-- the notification does. So, after its change has committed, the writer sends
-- NOTIFY switch_directory 'sync:<token>' (token from the sequence below) and waits until every listening
-- directory has acknowledged a token at least as high. Notifications reach a listener in commit order, so
-- one that acknowledges the token has already dropped whatever the change touched.

CREATE SEQUENCE directory_change_token;

-- One row per live LISTEN session of a switchd's card directory (switch/adapters/postgres/directory.py).
CREATE TABLE directory_listeners (
    listener_id  text PRIMARY KEY,
    -- The highest sync token this listener has applied; a new listener starts at the sequence's value,
    -- since it cleared its caches when it began listening.
    acked_token  bigint NOT NULL,
    -- Heartbeat, renewed every probe interval: a row left behind by a crashed process stops being waited
    -- for once it is a few intervals old.
    seen_at      timestamptz NOT NULL DEFAULT now()
);
