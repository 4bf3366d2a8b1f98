-- A completed recovery (a drill or a real one) is the proof that a service's backups restore:
-- record it on each affected service's health row, with the measured time as the estimate for
-- the next full recovery.
CREATE FUNCTION kdr_record_recovery_test() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.recovery_status = 'completed'
       AND (TG_OP = 'INSERT' OR OLD.recovery_status IS DISTINCT FROM 'completed')
       AND NEW.affected_services IS NOT NULL THEN
        INSERT INTO backup_health_monitoring AS h (tenant_id, service_name, last_recovery_test, estimated_full_recovery_time)
        SELECT DISTINCT NEW.tenant_id, s, coalesce(NEW.completed_at, now()), NEW.actual_recovery_time
        FROM unnest(NEW.affected_services) AS s
        ON CONFLICT (tenant_id, service_name) DO UPDATE SET
            last_recovery_test = greatest(h.last_recovery_test, EXCLUDED.last_recovery_test),
            estimated_full_recovery_time = coalesce(EXCLUDED.estimated_full_recovery_time, h.estimated_full_recovery_time);
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER disaster_recovery_proves_health
    AFTER INSERT OR UPDATE OF recovery_status ON disaster_recovery_log
    FOR EACH ROW EXECUTE FUNCTION kdr_record_recovery_test();
