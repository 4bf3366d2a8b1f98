-- Group roles (NOLOGIN). The Pulumi program declares the LOGIN roles and grants them
-- membership: agents in kryonix_dr_writer, dashboards in kryonix_dr_reader.
-- Writers may record and update runs but never DELETE (history and audit stay) and never
-- change the schema; only the owner that runs these migrations can.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kryonix_dr_writer') THEN
        CREATE ROLE kryonix_dr_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kryonix_dr_reader') THEN
        CREATE ROLE kryonix_dr_reader NOLOGIN;
    END IF;
    -- PostgreSQL 15 already denies CREATE on public to PUBLIC in new databases; a catalog
    -- database upgraded from an older version may not, so say it explicitly.
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', current_schema());
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO kryonix_dr_writer, kryonix_dr_reader', current_schema());
END;
$$;

REVOKE ALL ON backup_management, backup_artifact, wal_segment, disaster_recovery_log,
              backup_health_monitoring, backup_health, schema_migrations FROM PUBLIC;

GRANT SELECT, INSERT, UPDATE ON backup_management, backup_artifact, wal_segment,
      disaster_recovery_log, backup_health_monitoring TO kryonix_dr_writer;
GRANT SELECT ON backup_health, schema_migrations TO kryonix_dr_writer;

GRANT SELECT ON backup_management, backup_artifact, wal_segment, disaster_recovery_log,
      backup_health_monitoring, backup_health, schema_migrations TO kryonix_dr_reader;

GRANT EXECUTE ON FUNCTION calculate_backup_metrics(uuid) TO kryonix_dr_writer, kryonix_dr_reader;
