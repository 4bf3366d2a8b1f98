-- Behaviour on top of the tables: updated_at upkeep, the legal status flow, the seed's health
-- trigger (fixed) and calculate_backup_metrics (fixed). Functions capture the migration's
-- search_path so a caller's search_path cannot redirect them to other tables.

CREATE FUNCTION kdr_set_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER backup_management_updated_at BEFORE UPDATE ON backup_management
    FOR EACH ROW EXECUTE FUNCTION kdr_set_updated_at();
CREATE TRIGGER disaster_recovery_log_updated_at BEFORE UPDATE ON disaster_recovery_log
    FOR EACH ROW EXECUTE FUNCTION kdr_set_updated_at();
CREATE TRIGGER backup_health_monitoring_updated_at BEFORE UPDATE ON backup_health_monitoring
    FOR EACH ROW EXECUTE FUNCTION kdr_set_updated_at();

-- pending -> running -> completed | failed, and completed | failed -> expired once pruned.
-- Nothing goes back: a run that was reconciled to failed (its agent presumed dead) can never be
-- flipped to completed by that agent waking up, and a completed row never becomes running again.
CREATE FUNCTION kdr_enforce_backup_status_flow() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF OLD.backup_status IS DISTINCT FROM NEW.backup_status AND NOT (
           (OLD.backup_status = 'pending'   AND NEW.backup_status IN ('running', 'failed'))
        OR (OLD.backup_status = 'running'   AND NEW.backup_status IN ('completed', 'failed'))
        OR (OLD.backup_status IN ('completed', 'failed') AND NEW.backup_status = 'expired'))
    THEN
        RAISE EXCEPTION 'backup % cannot go from % to %', OLD.backup_id, OLD.backup_status, NEW.backup_status
            USING ERRCODE = 'check_violation',
                  HINT = 'Allowed: pending->running|failed, running->completed|failed, completed|failed->expired. Start a new backup instead of reusing a finished row.';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER backup_status_flow BEFORE UPDATE OF backup_status ON backup_management
    FOR EACH ROW EXECUTE FUNCTION kdr_enforce_backup_status_flow();

-- Stored bytes of the service's live (completed, not yet expired) backups, in GB.
CREATE FUNCTION kdr_service_storage_gb(p_tenant_id uuid, p_service_name text) RETURNS numeric
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT round(coalesce(sum(backup_size), 0) / 1024.0 / 1024.0 / 1024.0, 2)
    FROM backup_management
    WHERE tenant_id = p_tenant_id AND service_name = p_service_name AND backup_status = 'completed';
$$;

-- The seed's trigger, fixed: it also fires on INSERT (a row inserted already completed or
-- failed counts), it only counts a real status change (re-writing the same status is not a
-- second backup), the failed branch creates the health row when it is missing, and it follows
-- verification: last_verified_backup is the newest recovery point a verify has proven.
CREATE FUNCTION update_backup_health() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    status_changed boolean := TG_OP = 'INSERT' OR OLD.backup_status IS DISTINCT FROM NEW.backup_status;
    verify_changed boolean := NEW.verify_status IS NOT NULL AND (TG_OP = 'INSERT'
        OR OLD.verify_status IS DISTINCT FROM NEW.verify_status
        OR OLD.verified_at IS DISTINCT FROM NEW.verified_at);
BEGIN
    IF status_changed AND NEW.backup_status = 'completed' THEN
        INSERT INTO backup_health_monitoring AS h (
            tenant_id, service_name, last_successful_backup, backup_streak, failure_count,
            health_status, storage_usage_gb
        ) VALUES (
            NEW.tenant_id, NEW.service_name, NEW.completed_at, 1, 0,
            'healthy', kdr_service_storage_gb(NEW.tenant_id, NEW.service_name)
        )
        ON CONFLICT (tenant_id, service_name) DO UPDATE SET
            last_successful_backup = greatest(h.last_successful_backup, EXCLUDED.last_successful_backup),
            backup_streak = h.backup_streak + 1,
            failure_count = 0,
            health_status = 'healthy',
            storage_usage_gb = EXCLUDED.storage_usage_gb;
    ELSIF status_changed AND NEW.backup_status = 'failed' THEN
        INSERT INTO backup_health_monitoring AS h (
            tenant_id, service_name, last_failed_backup, backup_streak, failure_count, health_status
        ) VALUES (
            NEW.tenant_id, NEW.service_name, coalesce(NEW.failed_at, now()), 0, 1, 'degraded'
        )
        ON CONFLICT (tenant_id, service_name) DO UPDATE SET
            last_failed_backup = greatest(h.last_failed_backup, EXCLUDED.last_failed_backup),
            failure_count = h.failure_count + 1,
            backup_streak = 0,
            health_status = CASE
                WHEN h.failure_count + 1 >= 3 THEN 'critical'
                WHEN h.failure_count + 1 >= 2 THEN 'warning'
                ELSE 'degraded'
            END;
    ELSIF status_changed AND NEW.backup_status = 'expired' THEN
        UPDATE backup_health_monitoring
        SET storage_usage_gb = kdr_service_storage_gb(NEW.tenant_id, NEW.service_name)
        WHERE tenant_id = NEW.tenant_id AND service_name = NEW.service_name;
    END IF;

    IF verify_changed AND NEW.verify_status = 'passed' THEN
        INSERT INTO backup_health_monitoring AS h (tenant_id, service_name, last_verified_backup)
        VALUES (NEW.tenant_id, NEW.service_name, coalesce(NEW.recovery_point_end, NEW.completed_at))
        ON CONFLICT (tenant_id, service_name) DO UPDATE SET
            last_verified_backup = greatest(h.last_verified_backup, EXCLUDED.last_verified_backup),
            verify_failure_count = 0;
    ELSIF verify_changed AND NEW.verify_status = 'failed' THEN
        INSERT INTO backup_health_monitoring AS h (tenant_id, service_name, verify_failure_count)
        VALUES (NEW.tenant_id, NEW.service_name, 1)
        ON CONFLICT (tenant_id, service_name) DO UPDATE SET
            verify_failure_count = h.verify_failure_count + 1;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER backup_status_health_trigger
    AFTER INSERT OR UPDATE OF backup_status, verify_status, verified_at ON backup_management
    FOR EACH ROW EXECUTE FUNCTION update_backup_health();

-- Health as dashboards and alerts should read it. Completion alone is not health: a backup no
-- verify has proven is 'unverified', and one older than twice its schedule is 'stale'.
-- Precedence: critical > warning > stale > unverified > degraded > healthy.
CREATE VIEW backup_health AS
SELECT h.*,
       now() - h.last_verified_backup AS last_verified_age,
       CASE
           WHEN h.health_status = 'critical' OR h.verify_failure_count >= 2 THEN 'critical'
           WHEN h.health_status = 'warning' OR h.verify_failure_count = 1 THEN 'warning'
           WHEN h.last_successful_backup IS NULL
                OR now() - h.last_successful_backup > 2 * h.backup_frequency THEN 'stale'
           WHEN h.last_verified_backup IS NULL
                OR now() - h.last_verified_backup > 2 * h.backup_frequency THEN 'unverified'
           ELSE h.health_status
       END AS effective_status
FROM backup_health_monitoring h;

-- The seed's metrics function, fixed:
--  * successful = completed + expired (an expired row was a completed backup, since pruned);
--  * success_rate is over finished runs only, so a run in progress does not lower it
--    (NULL when nothing has finished);
--  * sizes and last_backup_age come from successful rows only (the seed took MAX(completed_at)
--    and AVG(size) over every row, failures included);
--  * storage_usage counts only completed rows, whose objects still exist;
--  * extra columns in bytes (GB rounded to 2 places hides small backups) and the verified age.
CREATE FUNCTION calculate_backup_metrics(p_tenant_id uuid)
RETURNS TABLE (
    service_name             varchar(100),
    total_backups            bigint,
    successful_backups       bigint,
    failed_backups           bigint,
    success_rate             numeric(5, 2),
    avg_backup_size_gb       numeric(10, 2),
    last_backup_age          interval,
    storage_usage_gb         numeric(10, 2),
    running_backups          bigint,
    avg_backup_size_bytes    bigint,
    storage_usage_bytes      bigint,
    last_verified_backup_age interval
)
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT
        bm.service_name,
        count(*),
        count(*) FILTER (WHERE bm.backup_status IN ('completed', 'expired')),
        count(*) FILTER (WHERE bm.backup_status = 'failed'),
        round(count(*) FILTER (WHERE bm.backup_status IN ('completed', 'expired'))::numeric * 100
              / nullif(count(*) FILTER (WHERE bm.backup_status IN ('completed', 'expired', 'failed')), 0), 2)::numeric(5, 2),
        round(avg(bm.backup_size) FILTER (WHERE bm.backup_status IN ('completed', 'expired'))
              / 1024.0 / 1024.0 / 1024.0, 2)::numeric(10, 2),
        now() - max(bm.completed_at) FILTER (WHERE bm.backup_status IN ('completed', 'expired')),
        round(coalesce(sum(bm.backup_size) FILTER (WHERE bm.backup_status = 'completed'), 0)
              / 1024.0 / 1024.0 / 1024.0, 2)::numeric(10, 2),
        count(*) FILTER (WHERE bm.backup_status IN ('pending', 'running')),
        round(avg(bm.backup_size) FILTER (WHERE bm.backup_status IN ('completed', 'expired')))::bigint,
        coalesce(sum(bm.backup_size) FILTER (WHERE bm.backup_status = 'completed'), 0)::bigint,
        now() - max(coalesce(bm.recovery_point_end, bm.completed_at))
                FILTER (WHERE bm.backup_status = 'completed' AND bm.verify_status = 'passed')
    FROM backup_management bm
    WHERE bm.tenant_id = p_tenant_id
    GROUP BY bm.service_name
    ORDER BY bm.service_name;
$$;
