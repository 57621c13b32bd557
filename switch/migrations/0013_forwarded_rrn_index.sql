-- A foreign card's void or completion that names its original only by RRN (field 37) finds the forwarded
-- transaction by the RRN it carried to the network: look it up without a table scan.
CREATE INDEX forwarded_transactions_rrn ON forwarded_transactions ((fields->>'37'));
