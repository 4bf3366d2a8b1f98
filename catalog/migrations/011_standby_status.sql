-- Each warm standby's follower (`kdr-agent standby follow`, the dr stack) reports at every look
-- how far its standby is behind the primary, so that `kryonix-dr status` and the health job judge
-- a standby against its service's RPO as they judge backups (issue #14). One row per standby (a
-- service has at most one per region), replaced at each look; a row that stops changing is a
-- follower that stopped looking.
CREATE TABLE standby_status (
    tenant_id        uuid NOT NULL,
    service_name     varchar(100) NOT NULL CHECK (service_name ~ '^[a-z0-9][a-z0-9_.-]*$'),
    region           text NOT NULL CHECK (region <> ''),
    engine           text NOT NULL CHECK (engine IN ('postgres', 'redis')),
    standby_host     text NOT NULL CHECK (standby_host <> ''),
    primary_host     text NOT NULL CHECK (primary_host <> ''),
    -- following: a standby that replays; promoted: it is a primary now; unreachable: it does not answer.
    state            text NOT NULL CHECK (state IN ('following', 'promoted', 'unreachable')),
    -- PostgreSQL: streaming WAL from the primary; Redis: the replica's link is up.
    streaming        boolean NOT NULL,
    -- What the primary has written that the standby has not applied; null while the primary does not answer.
    lag_bytes        bigint CHECK (lag_bytes >= 0),
    -- 0 when nothing is behind; else since the standby last applied a write (PostgreSQL: the last
    -- commit replayed; Redis: the link's last I/O, or since it went down); null when unknown.
    lag_seconds      double precision CHECK (lag_seconds >= 0),
    last_replayed_at timestamptz,
    rpo_target       interval CHECK (rpo_target > interval '0'),
    report_interval  interval NOT NULL CHECK (report_interval > interval '0'),
    detail           text,
    reported_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, service_name, region)
);

REVOKE ALL ON standby_status FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON standby_status TO kryonix_dr_writer;
GRANT SELECT ON standby_status TO kryonix_dr_reader;
