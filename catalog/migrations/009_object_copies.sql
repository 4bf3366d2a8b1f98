-- Where every copy of a stored object is. A region's buckets give each object version their own
-- version id, so the primary's ids (recorded in backup_artifact and wal_segment) do not name the
-- DR region's copies: the replicator records, for every version it copies, the copy's version id
-- in its region, and when it was copied. A restore from that region reads these ids; the
-- replication lag of a service is the age of its oldest version not yet copied.
-- A copy is found by its endpoint (the S3 server's URL origin), not by the region name: two
-- regions may share a signing region name (and bucket names), never a server.
CREATE TABLE object_copy (
    endpoint          text NOT NULL CHECK (endpoint ~ '^https?://[^/]+$'),
    region            text NOT NULL CHECK (region <> ''),
    bucket            text NOT NULL CHECK (bucket <> ''),
    object_key        text NOT NULL CHECK (object_key <> ''),
    source_version_id text NOT NULL CHECK (source_version_id <> ''),
    copy_version_id   text,
    service_name      varchar(100),
    source_bucket     text CHECK (source_bucket <> ''),
    source_created_at timestamptz,
    copied_at         timestamptz NOT NULL DEFAULT now(),
    size_bytes        bigint CHECK (size_bytes >= 0),
    PRIMARY KEY (endpoint, bucket, object_key, source_version_id)
);

CREATE INDEX object_copy_by_source ON object_copy (source_bucket, object_key, source_version_id);
CREATE INDEX object_copy_by_service ON object_copy (service_name, copied_at);

REVOKE ALL ON object_copy FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON object_copy TO kryonix_dr_writer;
GRANT SELECT ON object_copy TO kryonix_dr_reader;
