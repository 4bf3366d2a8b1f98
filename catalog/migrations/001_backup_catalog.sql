-- The backup catalog: one row per backup run, its stored objects, the WAL archive, and the
-- recovery log. Derived from the seed's schema (PARTE-22) with its defects fixed:
--   * checksum is text holding 64 lowercase hex digits (PostgreSQL has no SHA256 type);
--   * status and type values are CHECKed, so a typo cannot create a status nobody queries for;
--   * compression_ratio and backup_location are generated from measured columns, so they can
--     never be guessed or disagree with the facts they summarise.
-- No BEGIN/COMMIT here: catalog/migrate.ts runs each file in its own transaction.

CREATE TABLE backup_management (
    backup_id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL,
    service_name         varchar(100) NOT NULL CHECK (service_name ~ '^[a-z0-9][a-z0-9_.-]*$'),
    engine               text CHECK (engine IN ('postgres', 'redis', 'volume')),
    backup_type          varchar(50) NOT NULL
                         CHECK (backup_type IN ('full', 'incremental', 'differential', 'logical', 'wal')),
    backup_status        varchar(20) NOT NULL DEFAULT 'pending'
                         CHECK (backup_status IN ('pending', 'running', 'completed', 'failed', 'expired')),

    -- Where the objects live: bucket + key prefix (+ region); backup_location is the seed's
    -- single-string form, derived so it cannot drift from the parts.
    storage_bucket       text NOT NULL CHECK (storage_bucket <> ''),
    storage_prefix       text NOT NULL,
    storage_region       text,
    backup_location      text GENERATED ALWAYS AS ('s3://' || storage_bucket || '/' || storage_prefix) STORED,

    -- Sizes in bytes, both measured: raw_size is what the tool read, backup_size what was stored
    -- (after compression and encryption). The ratio is stored/raw, NULL until both are known.
    raw_size             bigint CHECK (raw_size >= 0),
    backup_size          bigint CHECK (backup_size >= 0),
    compression_ratio    numeric(12, 4) GENERATED ALWAYS AS (
                             CASE WHEN raw_size > 0 AND backup_size IS NOT NULL
                                  THEN round(backup_size::numeric / raw_size, 4) END) STORED,

    -- Time: queued (created_at), started (markRunning), ended (completed_at or failed_at).
    started_at           timestamptz DEFAULT now(),
    completed_at         timestamptz,
    failed_at            timestamptz,
    duration             interval GENERATED ALWAYS AS (coalesce(completed_at, failed_at) - started_at) STORED,

    -- The recovery points this backup can restore to. For a base backup start = end = the
    -- consistency point; a logical dump covers its snapshot time.
    recovery_point_start timestamptz,
    recovery_point_end   timestamptz,
    timeline             integer CHECK (timeline > 0),
    start_lsn            pg_lsn,
    end_lsn              pg_lsn,

    checksum             text CHECK (checksum ~ '^[0-9a-f]{64}$'),
    tool                 text,
    tool_version         text,
    encryption_key_id    text,
    parent_backup_id     uuid REFERENCES backup_management (backup_id),

    -- Who runs it, so rows left behind by a dead agent can be found and reconciled.
    run_host             text,
    run_pid              integer,
    run_token            text,
    heartbeat_at         timestamptz,
    error_message        text,

    verified_at          timestamptz,
    verify_status        text CHECK (verify_status IN ('passed', 'failed')),
    verify_details       jsonb,

    retention_until      timestamptz,
    expired_at           timestamptz,
    metadata             jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT backup_parent_not_self CHECK (parent_backup_id IS DISTINCT FROM backup_id),
    CONSTRAINT backup_rp_order CHECK (recovery_point_start IS NULL OR recovery_point_end IS NULL
                                      OR recovery_point_start <= recovery_point_end),
    CONSTRAINT backup_lsn_order CHECK (start_lsn IS NULL OR end_lsn IS NULL OR start_lsn <= end_lsn),
    -- A completed row is a promise that a restore can use it: it must say what it holds and where.
    CONSTRAINT backup_completed_is_complete CHECK (backup_status <> 'completed' OR (
        completed_at IS NOT NULL AND backup_size IS NOT NULL AND recovery_point_end IS NOT NULL)),
    CONSTRAINT backup_failed_has_reason CHECK (backup_status <> 'failed' OR (
        failed_at IS NOT NULL AND error_message IS NOT NULL AND error_message <> '')),
    CONSTRAINT backup_verify_pair CHECK ((verify_status IS NULL) = (verified_at IS NULL))
);

COMMENT ON COLUMN backup_management.compression_ratio IS
    'backup_size / raw_size, both measured; NULL when either is unknown. Below 1 means the stored copy is smaller.';
COMMENT ON COLUMN backup_management.checksum IS
    'SHA-256 (64 lowercase hex) of the primary artifact; every object has its own in backup_artifact.';

CREATE INDEX idx_backup_management_tenant_service ON backup_management (tenant_id, service_name);
CREATE INDEX idx_backup_management_status_date ON backup_management (backup_status, started_at);
-- latestGoodBackup / recoveryPlan: newest usable recovery point per service.
CREATE INDEX idx_backup_management_good ON backup_management (service_name, recovery_point_end DESC)
    WHERE backup_status = 'completed';
-- reconcileStaleRuns scans only in-flight rows.
CREATE INDEX idx_backup_management_inflight ON backup_management (service_name, heartbeat_at)
    WHERE backup_status IN ('pending', 'running');
CREATE INDEX idx_backup_management_parent ON backup_management (parent_backup_id)
    WHERE parent_backup_id IS NOT NULL;

-- Every object one backup stored (a base backup has its tar(s) and a manifest; a dump one file).
CREATE TABLE backup_artifact (
    artifact_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    backup_id     uuid NOT NULL REFERENCES backup_management (backup_id) ON DELETE CASCADE,
    role          text NOT NULL CHECK (role ~ '^[a-z][a-z0-9_-]*$'),
    object_key    text NOT NULL CHECK (object_key <> ''),
    version_id    text,
    sha256        text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes    bigint NOT NULL CHECK (size_bytes >= 0),
    raw_size      bigint CHECK (raw_size >= 0),
    metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (backup_id, object_key)
);
COMMENT ON COLUMN backup_artifact.role IS 'What the object is: base, manifest, wal, dump, rdb, restic, ...';

-- The continuous WAL archive, one row per uploaded segment (or timeline history file).
CREATE TABLE wal_segment (
    segment_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL,
    service_name  varchar(100) NOT NULL,
    timeline      integer NOT NULL CHECK (timeline > 0),
    segment_name  text NOT NULL CHECK (segment_name ~ '^([0-9A-F]{24}(\.partial)?|[0-9A-F]{8}\.history)$'),
    start_lsn     pg_lsn,
    end_lsn       pg_lsn,
    object_key    text NOT NULL CHECK (object_key <> ''),
    version_id    text,
    sha256        text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes    bigint NOT NULL CHECK (size_bytes >= 0),
    raw_size      bigint CHECK (raw_size >= 0),
    -- Newest point in time this segment lets a restore reach (e.g. its last commit timestamp,
    -- or the time it was closed): what recovery plans and RPO are computed from.
    covers_until  timestamptz NOT NULL,
    encryption_key_id text,
    uploaded_at   timestamptz NOT NULL DEFAULT now(),
    -- Re-uploading the same segment must not add a second row.
    CONSTRAINT wal_segment_once UNIQUE (tenant_id, service_name, timeline, segment_name),
    CONSTRAINT wal_lsn_order CHECK (start_lsn IS NULL OR end_lsn IS NULL OR start_lsn <= end_lsn)
);
CREATE INDEX idx_wal_segment_service_covers ON wal_segment (service_name, covers_until);
CREATE INDEX idx_wal_segment_service_lsn ON wal_segment (service_name, timeline, start_lsn);

CREATE TABLE disaster_recovery_log (
    recovery_id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL,
    incident_type        varchar(100) NOT NULL,
    affected_services    text[],
    recovery_procedure   text NOT NULL,
    recovery_status      varchar(20) NOT NULL DEFAULT 'initiated'
                         CHECK (recovery_status IN ('initiated', 'running', 'completed', 'failed')),
    -- What was asked for ('latest', an ISO timestamp, or a backup id) and what was reached.
    recovery_target      text,
    recovery_point       timestamptz,
    source_backup_ids    uuid[],
    rto_target           interval,
    rpo_target           interval,
    actual_recovery_time interval,
    -- Seconds of committed data the recovery point is behind the incident (measured by the drill).
    data_loss_seconds    numeric(12, 3) CHECK (data_loss_seconds >= 0),
    data_loss_minutes    integer GENERATED ALWAYS AS (ceil(data_loss_seconds / 60)::integer) STORED,
    rto_met              boolean GENERATED ALWAYS AS (actual_recovery_time <= rto_target) STORED,
    rpo_met              boolean GENERATED ALWAYS AS (data_loss_seconds <= extract(epoch FROM rpo_target)) STORED,
    -- Seconds per phase, e.g. {"fetch": 12.4, "restore": 40.2, "verify": 3.1}.
    phase_timings        jsonb NOT NULL DEFAULT '{}'::jsonb,
    initiated_by         varchar(100),
    initiated_at         timestamptz NOT NULL DEFAULT now(),
    completed_at         timestamptz,
    recovery_notes       text,
    error_message        text,
    lessons_learned      text,
    metadata             jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT recovery_failed_has_reason CHECK (recovery_status <> 'failed' OR error_message IS NOT NULL)
);
CREATE INDEX idx_disaster_recovery_tenant_status ON disaster_recovery_log (tenant_id, recovery_status);
CREATE INDEX idx_disaster_recovery_initiated ON disaster_recovery_log (initiated_at DESC);

CREATE TABLE backup_health_monitoring (
    monitor_id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id                    uuid NOT NULL,
    service_name                 varchar(100) NOT NULL,
    backup_frequency             interval NOT NULL DEFAULT interval '24 hours',
    last_successful_backup       timestamptz,
    last_failed_backup           timestamptz,
    last_verified_backup         timestamptz,
    backup_streak                integer NOT NULL DEFAULT 0,
    failure_count                integer NOT NULL DEFAULT 0,
    verify_failure_count         integer NOT NULL DEFAULT 0,
    health_status                varchar(20) NOT NULL DEFAULT 'healthy'
                                 CHECK (health_status IN ('healthy', 'degraded', 'warning', 'critical')),
    storage_usage_gb             numeric(10, 2),
    storage_quota_gb             numeric(10, 2),
    estimated_full_recovery_time interval,
    last_recovery_test           timestamptz,
    alerts_enabled               boolean NOT NULL DEFAULT true,
    created_at                   timestamptz NOT NULL DEFAULT now(),
    updated_at                   timestamptz NOT NULL DEFAULT now(),
    -- The seed's trigger upserts ON CONFLICT (tenant_id, service_name) with no key behind it.
    CONSTRAINT backup_health_one_row_per_service UNIQUE (tenant_id, service_name)
);
CREATE INDEX idx_backup_health_service_status ON backup_health_monitoring (service_name, health_status);
