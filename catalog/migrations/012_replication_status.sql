-- Each replicator (`kdr-agent replicate`, one per tier bucket and direction) reports after every
-- pass what it has not copied yet, per service: how many object versions and when the oldest of
-- them was stored. `kryonix-dr status` and the health job judge a copy that lags by more than the
-- service's RPO, or a replicator that stopped reporting (issue #14: the object backlog, checked
-- against the RPO). One row per replicator and service, replaced at each pass; object_copy keeps
-- what was copied, this what was not.
CREATE TABLE replication_status (
    -- The source: the S3 server's URL origin and bucket the replicator reads.
    source_endpoint   text NOT NULL CHECK (source_endpoint ~ '^https?://[^/]+$'),
    source_bucket     text NOT NULL CHECK (source_bucket <> ''),
    -- The replica: its S3 server (URL origin), region name (for people) and bucket.
    endpoint          text NOT NULL CHECK (endpoint ~ '^https?://[^/]+$'),
    region            text NOT NULL CHECK (region <> ''),
    bucket            text NOT NULL CHECK (bucket <> ''),
    service_name      varchar(100) NOT NULL CHECK (service_name ~ '^[a-z0-9][a-z0-9_.-]*$'),
    -- Versions of the service's objects in the source not copied yet (a copy made in the replica's
    -- region and sent back is never pending), and the storage time of the oldest of them.
    pending_objects   integer NOT NULL CHECK (pending_objects >= 0),
    oldest_pending_at timestamptz,
    -- Why the last pass stopped short; null when it copied everything it found.
    last_error        text,
    report_interval   interval NOT NULL CHECK (report_interval > interval '0'),
    reported_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_endpoint, source_bucket, endpoint, bucket, service_name),
    CONSTRAINT replication_status_oldest CHECK ((pending_objects = 0) = (oldest_pending_at IS NULL))
);

CREATE INDEX replication_status_by_service ON replication_status (service_name, region);

REVOKE ALL ON replication_status FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON replication_status TO kryonix_dr_writer;
GRANT SELECT ON replication_status TO kryonix_dr_reader;

-- Which follower process wrote each standby look, and when `kdr-agent standby activate` promoted
-- the standby and which follower had reported last then. A promoted row is replaced only by a
-- look saying `following` from another follower process (the standby seeded again): a late look
-- of the follower that ran at the promotion, or of that follower restarted against the promoted
-- server, leaves it promoted. No clocks are compared (a container's may differ from the catalog's).
ALTER TABLE standby_status
    ADD COLUMN reporter          text,
    ADD COLUMN promoted_at       timestamptz,
    ADD COLUMN promoted_reporter text;

-- A follower stopped on purpose withdraws its standby's row (unless promoted), a replicator its
-- backlog rows: nothing is judged of what no longer runs.
GRANT DELETE ON standby_status TO kryonix_dr_writer;
GRANT DELETE ON replication_status TO kryonix_dr_writer;
