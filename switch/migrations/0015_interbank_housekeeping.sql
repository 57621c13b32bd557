-- Housekeeping of the interbank tables (docs/operations.md "Housekeeping"): store-and-forward entries the
-- network acknowledged, or an operator purged, are deleted some time after they finished
-- (`saf.finished_keep_s`); entries that expired undelivered (money at risk) are never deleted by it. The
-- index serves that sweep only, so it holds the finished rows it may delete and nothing else.
CREATE INDEX saf_queue_prunable ON saf_queue (finished_at) WHERE state IN ('acknowledged', 'purged');
