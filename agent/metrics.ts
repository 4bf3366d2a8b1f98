/** Prometheus metrics of the serve mode (one registry per process). */
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";

export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: "kdr_agent_" });

const labelNames = ["service", "type"] as const;

export const m = {
  duration: new Gauge({ name: "kdr_backup_duration_seconds", help: "Duration of the last backup run", labelNames, registers: [registry] }),
  rawBytes: new Gauge({ name: "kdr_backup_raw_bytes", help: "Bytes read from the source by the last backup (measured)", labelNames, registers: [registry] }),
  storedBytes: new Gauge({ name: "kdr_backup_stored_bytes", help: "Bytes stored by the last backup after compression and encryption (measured)", labelNames, registers: [registry] }),
  ratio: new Gauge({ name: "kdr_backup_compression_ratio", help: "stored/raw of the last backup (measured)", labelNames, registers: [registry] }),
  lastSuccess: new Gauge({ name: "kdr_backup_last_success_timestamp_seconds", help: "Unix time of the last completed backup", labelNames, registers: [registry] }),
  lastVerified: new Gauge({ name: "kdr_backup_last_verified_timestamp_seconds", help: "Recovery point (unix time) of the newest backup a verify passed", labelNames: ["service"], registers: [registry] }),
  // A point in time, not its age: an age stops growing when its exporter stops looking (the cron's
  // health job runs every 2 h), and the alerts' max over a service's series would hold it. The
  // newest point any agent reports wins; the rules take its age as time() minus it.
  recoveryPoint: new Gauge({ name: "kdr_recovery_point_timestamp_seconds", help: "Newest verified recovery point (unix time): a verified base plus the contiguous WAL after it (catalog); its age is the RPO", labelNames: ["service"], registers: [registry] }),
  rpoTarget: new Gauge({ name: "kdr_rpo_target_seconds", help: "Configured RPO target", labelNames: ["service"], registers: [registry] }),
  walLag: new Gauge({ name: "kdr_wal_lag_seconds", help: "Seconds since the last WAL segment reached the object store", labelNames: ["service"], registers: [registry] }),
  walSegments: new Counter({ name: "kdr_wal_segments_uploaded_total", help: "WAL segments uploaded", labelNames: ["service"], registers: [registry] }),
  resticGeneration: new Gauge({ name: "kdr_restic_repository_generation", help: "Generation of the restic repository backups go to (it grows when one was found unusable)", labelNames: ["service"], registers: [registry] }),
  resticRepoFailures: new Counter({ name: "kdr_restic_repository_failures_total", help: "restic repositories found unusable and replaced by a new generation", labelNames: ["service"], registers: [registry] }),
  lastDrill: new Gauge({ name: "kdr_restore_drill_last_success_timestamp_seconds", help: "Unix time of the last restore drill that passed (cron container)", labelNames: ["service"], registers: [registry] }),
  failures: new Counter({ name: "kdr_backup_failures_total", help: "Failed runs", labelNames: ["service", "type"], registers: [registry] }),
};
