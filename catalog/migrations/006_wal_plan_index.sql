-- recoveryPlan and rpoSeconds read one service's live segments of one timeline from a segment
-- name on, often without a tenant filter (service names are unique in a platform).
CREATE INDEX idx_wal_segment_plan ON wal_segment (service_name, timeline, segment_name)
    WHERE expired_at IS NULL;
