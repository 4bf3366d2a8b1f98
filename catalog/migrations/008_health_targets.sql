-- Each sidecar writes its effective schedule and targets into its health row when it starts
-- (until now backup_frequency stayed at its 24 h default, so a Redis backed up every 5 minutes
-- was reported stale only after 48 h). The RPO and RTO beside it let dashboards, `status` and
-- alerts judge a service by its own targets.
ALTER TABLE backup_health_monitoring
    ADD COLUMN rpo_target interval CHECK (rpo_target > interval '0'),
    ADD COLUMN rto_target interval CHECK (rto_target > interval '0'),
    ADD COLUMN schedule_full text,
    ADD COLUMN schedule_incremental text,
    ADD COLUMN settings_reported_at timestamptz;

-- The view lists h.* as it was when created: recreate it so the new columns show.
DROP VIEW backup_health;
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

REVOKE ALL ON backup_health FROM PUBLIC;
GRANT SELECT ON backup_health TO kryonix_dr_writer, kryonix_dr_reader;
