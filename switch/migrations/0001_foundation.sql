-- Foundation: facts about this database and the switch nodes that use it.
-- Business tables (institutions, cards, accounts, ledger, journal) arrive with the core issue.

CREATE TABLE switch_meta (
    key         text PRIMARY KEY,
    value       text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO switch_meta (key, value) VALUES ('created_by', 'cardswitch');

-- One row per switchd node: last start and stop, so an operator can see who shares the database.
CREATE TABLE switch_nodes (
    node_name    text PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    stopped_at   timestamptz,
    pid          integer NOT NULL,
    version      text NOT NULL
);
