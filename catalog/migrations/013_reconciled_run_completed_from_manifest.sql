-- A run reconciled to failed (its agent stopped reporting) whose manifest turns up in its bucket
-- later is completed from that manifest. The manifest is written last, after every object of the
-- backup: it proves the run completed. The case: a region lost while a backup finished, the
-- catalog restored to a point before its end; the recovered service's next run found no manifest
-- in its bucket yet and reconciled the row to failed; the manifest was copied in once the region
-- came back. Without this the catalog kept calling failed a backup every store holds complete
-- (a catalog rebuilt from the manifests called it completed).
--
-- Still nothing goes back on an agent's own word: only a row failed by reconciliation, and only
-- with the manifest's proof in its metadata (completedFromManifest), may become completed.
CREATE OR REPLACE FUNCTION kdr_enforce_backup_status_flow() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF OLD.backup_status IS DISTINCT FROM NEW.backup_status AND NOT (
           (OLD.backup_status = 'pending'   AND NEW.backup_status IN ('running', 'failed'))
        OR (OLD.backup_status = 'running'   AND NEW.backup_status IN ('completed', 'failed'))
        OR (OLD.backup_status = 'failed'    AND NEW.backup_status = 'completed'
            AND OLD.error_message LIKE 'reconciled by %' AND NEW.metadata ? 'completedFromManifest')
        OR (OLD.backup_status IN ('completed', 'failed') AND NEW.backup_status = 'expired'))
    THEN
        RAISE EXCEPTION 'backup % cannot go from % to %', OLD.backup_id, OLD.backup_status, NEW.backup_status
            USING ERRCODE = 'check_violation',
                  HINT = 'Allowed: pending->running|failed, running->completed|failed, completed|failed->expired, and a run failed by reconciliation -> completed from its stored manifest. Start a new backup instead of reusing a finished row.';
    END IF;
    RETURN NEW;
END;
$$;
