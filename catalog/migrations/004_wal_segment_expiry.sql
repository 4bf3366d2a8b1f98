-- Prune marks archived WAL it has deleted (writers have no DELETE), so recovery plans never
-- count on a segment whose object is gone.
ALTER TABLE wal_segment ADD COLUMN expired_at timestamptz;
CREATE INDEX idx_wal_segment_live ON wal_segment (tenant_id, service_name, timeline, segment_name)
    WHERE expired_at IS NULL;
