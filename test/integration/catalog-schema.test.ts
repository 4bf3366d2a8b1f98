/**
 * The catalog schema on a real PostgreSQL 15: the seed's health trigger and
 * calculate_backup_metrics() behave as the seed intends (with its defects fixed), the constraints
 * hold, and the writer/reader roles can do exactly what they should.
 */
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrate } from "../../catalog/migrate.js";
import * as q from "../../catalog/queries.js";
import { startTmpPostgres, type TmpPostgres } from "../support/tmp-postgres.js";

const MIGRATIONS = path.join(__dirname, "../../catalog/migrations");
const T1 = "11111111-1111-4111-8111-111111111111";
const T2 = "22222222-2222-4222-8222-222222222222";
const GiB = 1024 ** 3;
const HEX = "0123456789abcdef".repeat(4);

let server: TmpPostgres;
let owner: pg.Pool;
const pools: pg.Pool[] = [];

/** Inserts a row straight into backup_management (as the seed's service would). */
async function insertRow(db: q.Db, r: { tenant?: string; service: string; status: string; type?: string; size?: number; completedAgo?: string; extra?: Record<string, unknown> }): Promise<string> {
  const completed = r.status === "completed" || r.status === "expired";
  const cols: Record<string, unknown> = {
    tenant_id: r.tenant ?? T1,
    service_name: r.service,
    backup_type: r.type ?? "full",
    backup_status: r.status,
    storage_bucket: "kdr-backups",
    storage_prefix: `full/${r.service}/`,
    backup_size: r.size ?? (completed ? 1000 : null),
    ...(completed ? { recovery_point_end: new Date() } : {}),
    ...(r.status === "failed" ? { failed_at: new Date(), error_message: "disk full" } : {}),
    ...(r.extra ?? {}),
  };
  const names = Object.keys(cols);
  const exprs = names.map((_, i) => `$${i + 1}`);
  if (completed) {
    names.push("completed_at");
    exprs.push(`now() - $${names.length}::interval`);
    cols.completed_at = r.completedAgo ?? "0 seconds";
  }
  const { rows } = await db.query<{ backup_id: string }>(
    `INSERT INTO backup_management (${names.join(", ")}) VALUES (${exprs.join(", ")}) RETURNING backup_id`,
    Object.values(cols),
  );
  return rows[0]!.backup_id;
}

async function health(service: string, tenant = T1) {
  const { rows } = await owner.query(
    `SELECT backup_streak, failure_count, health_status, effective_status, last_successful_backup, last_verified_backup, verify_failure_count
     FROM backup_health WHERE tenant_id = $1 AND service_name = $2`,
    [tenant, service],
  );
  return rows[0];
}

async function pgError(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return e as { code?: string; message: string };
  }
  throw new Error("expected the statement to fail, it succeeded");
}

beforeAll(async () => {
  server = await startTmpPostgres();
  owner = new pg.Pool({ connectionString: server.url, max: 4 });
  pools.push(owner);
  const c = await owner.connect();
  try {
    await migrate(c, { dir: MIGRATIONS });
  } finally {
    c.release();
  }
});
afterAll(async () => {
  for (const p of pools) await p.end().catch(() => {});
  await server?.stop();
});

describe("health trigger (seed's update_backup_health, fixed)", () => {
  it("a row INSERTed as completed creates the health row: healthy, streak 1 (the seed ignored INSERTs)", async () => {
    await insertRow(owner, { service: "ins-completed", status: "completed" });
    expect(await health("ins-completed")).toMatchObject({ backup_streak: 1, failure_count: 0, health_status: "healthy" });
  });

  it("UPDATE to completed counts a streak; re-writing the same status does not count twice", async () => {
    for (let i = 0; i < 2; i++) {
      const id = await insertRow(owner, { service: "upd-completed", status: "pending" });
      await owner.query("UPDATE backup_management SET backup_status = 'running' WHERE backup_id = $1", [id]);
      expect(await health("upd-completed")).toMatchObject(i === 0 ? {} : { backup_streak: 1 });
      await owner.query(
        "UPDATE backup_management SET backup_status = 'completed', completed_at = now(), backup_size = 10, recovery_point_end = now() WHERE backup_id = $1",
        [id],
      );
      // Same status again (e.g. an UPDATE that only touches metadata but lists the column).
      await owner.query("UPDATE backup_management SET backup_status = 'completed', metadata = '{\"x\":1}' WHERE backup_id = $1", [id]);
    }
    expect(await health("upd-completed")).toMatchObject({ backup_streak: 2, failure_count: 0, health_status: "healthy" });
  });

  it("failures 1/2/3 give degraded/warning/critical; the first failure creates the missing row; a success resets", async () => {
    const svc = "fails";
    const expected = ["degraded", "warning", "critical"];
    for (let i = 0; i < 3; i++) {
      const id = await insertRow(owner, { service: svc, status: "running" });
      await owner.query("UPDATE backup_management SET backup_status = 'failed', failed_at = now(), error_message = 'boom' WHERE backup_id = $1", [id]);
      expect(await health(svc)).toMatchObject({ failure_count: i + 1, backup_streak: 0, health_status: expected[i] });
    }
    // A fourth failure stays critical.
    await insertRow(owner, { service: svc, status: "failed" });
    expect(await health(svc)).toMatchObject({ failure_count: 4, health_status: "critical" });
    await insertRow(owner, { service: svc, status: "completed" });
    expect(await health(svc)).toMatchObject({ failure_count: 0, backup_streak: 1, health_status: "healthy" });
    // A success after failures breaks nothing else: the next failure starts again at degraded.
    await insertRow(owner, { service: svc, status: "failed" });
    expect(await health(svc)).toMatchObject({ failure_count: 1, backup_streak: 0, health_status: "degraded" });
  });

  it("health considers verification: unverified until a verify passes, warning/critical on failed verifies", async () => {
    const svc = "verify-health";
    const id = await insertRow(owner, { service: svc, status: "completed" });
    expect(await health(svc)).toMatchObject({ health_status: "healthy", effective_status: "unverified", last_verified_backup: null });
    const passed = await q.recordVerification(owner, id, { status: "passed", details: { sha256: "ok" } });
    const h = await health(svc);
    expect(h.effective_status).toBe("healthy");
    expect(h.last_verified_backup.getTime()).toBe(passed.recoveryPointEnd!.getTime());
    const id2 = await insertRow(owner, { service: svc, status: "completed" });
    await q.recordVerification(owner, id2, { status: "failed", details: { reason: "sha mismatch" } });
    expect(await health(svc)).toMatchObject({ verify_failure_count: 1, effective_status: "warning" });
    const id3 = await insertRow(owner, { service: svc, status: "completed" });
    await q.recordVerification(owner, id3, { status: "failed" });
    expect(await health(svc)).toMatchObject({ verify_failure_count: 2, effective_status: "critical" });
    await q.recordVerification(owner, id3, { status: "passed" });
    expect(await health(svc)).toMatchObject({ verify_failure_count: 0, effective_status: "healthy" });
  });

  it("a service whose newest success is older than twice its frequency is stale", async () => {
    await insertRow(owner, { service: "old-service", status: "completed", completedAgo: "3 days" });
    expect(await health("old-service")).toMatchObject({ health_status: "healthy", effective_status: "stale" });
  });

  it("updated_at is maintained", async () => {
    const id = await insertRow(owner, { service: "touch", status: "pending" });
    const before = (await owner.query("SELECT updated_at FROM backup_management WHERE backup_id = $1", [id])).rows[0].updated_at as Date;
    await new Promise((r) => setTimeout(r, 20));
    await owner.query("UPDATE backup_management SET metadata = '{\"a\":1}' WHERE backup_id = $1", [id]);
    const after = (await owner.query("SELECT updated_at FROM backup_management WHERE backup_id = $1", [id])).rows[0].updated_at as Date;
    expect(after.getTime()).toBeGreaterThan(before.getTime());
  });
});

describe("calculate_backup_metrics (seed's function, fixed)", () => {
  it("returns the right counts, success rate, sizes and last_backup_age for a known set of rows", async () => {
    const t = "33333333-3333-4333-8333-333333333333";
    await insertRow(owner, { tenant: t, service: "alpha", status: "completed", size: 1 * GiB, completedAgo: "1 hour" });
    await insertRow(owner, { tenant: t, service: "alpha", status: "completed", size: 2 * GiB, completedAgo: "2 hours" });
    await insertRow(owner, { tenant: t, service: "alpha", status: "completed", size: 3 * GiB, completedAgo: "3 hours" });
    const expired = await insertRow(owner, { tenant: t, service: "alpha", status: "completed", size: 4 * GiB, completedAgo: "10 hours" });
    await owner.query("UPDATE backup_management SET backup_status = 'expired', expired_at = now() WHERE backup_id = $1", [expired]);
    await insertRow(owner, { tenant: t, service: "alpha", status: "failed", size: 0 });
    await insertRow(owner, { tenant: t, service: "alpha", status: "running" });
    await insertRow(owner, { tenant: t, service: "beta", status: "failed" });
    // Another tenant's rows never leak in.
    await insertRow(owner, { tenant: T2, service: "alpha", status: "completed", size: 100 * GiB });

    const m = await q.backupMetrics(owner, t);
    expect(m.map((r) => r.serviceName)).toEqual(["alpha", "beta"]);
    const [alpha, beta] = m as [q.BackupMetricsRow, q.BackupMetricsRow];
    expect(alpha).toMatchObject({
      totalBackups: 6,
      successfulBackups: 4, // 3 completed + 1 completed-then-expired
      failedBackups: 1,
      successRate: 80, // 4 of 5 finished runs; the running one does not count against it
      avgBackupSizeGb: 2.5,
      storageUsageGb: 6, // only completed rows still hold stored objects
      runningBackups: 1,
      avgBackupSizeBytes: 2.5 * GiB,
      storageUsageBytes: 6 * GiB,
      lastVerifiedBackupAgeSeconds: null,
    });
    expect(alpha.lastBackupAgeSeconds!).toBeGreaterThanOrEqual(3600);
    expect(alpha.lastBackupAgeSeconds!).toBeLessThan(3600 + 120);
    expect(beta).toMatchObject({ totalBackups: 1, successfulBackups: 0, failedBackups: 1, successRate: 0, avgBackupSizeGb: null, lastBackupAgeSeconds: null, storageUsageGb: 0 });

    // The raw SQL function, as dashboards call it, agrees.
    const raw = await owner.query("SELECT service_name, success_rate, avg_backup_size_gb, storage_usage_gb FROM calculate_backup_metrics($1) ORDER BY 1", [t]);
    expect(raw.rows[0]).toEqual({ service_name: "alpha", success_rate: "80.00", avg_backup_size_gb: "2.50", storage_usage_gb: "6.00" });
  });
});

describe("constraints", () => {
  it("checksum must be 64 lowercase hex digits (PostgreSQL has no SHA256 type)", async () => {
    for (const bad of ["XYZ", HEX.toUpperCase(), HEX.slice(1), HEX + "0", "g".repeat(64)]) {
      const e = await pgError(insertRow(owner, { service: "sum", status: "pending", extra: { checksum: bad } }));
      expect(e.code).toBe("23514");
      expect(e.message).toMatch(/backup_management_checksum_check/);
    }
    await insertRow(owner, { service: "sum", status: "pending", extra: { checksum: HEX } });
    const id = await insertRow(owner, { service: "sum", status: "pending" });
    const e = await pgError(
      owner.query("INSERT INTO backup_artifact (backup_id, role, object_key, sha256, size_bytes) VALUES ($1, 'base', 'k', 'nothex', 1)", [id]),
    );
    expect(e.code).toBe("23514");
  });

  it("status and type values are checked", async () => {
    expect((await pgError(insertRow(owner, { service: "chk", status: "done" }))).code).toBe("23514");
    expect((await pgError(insertRow(owner, { service: "chk", status: "pending", type: "snapshot" }))).code).toBe("23514");
    expect((await pgError(owner.query("INSERT INTO disaster_recovery_log (tenant_id, incident_type, recovery_procedure, recovery_status) VALUES ($1, 'x', 'y', 'ok')", [T1]))).code).toBe("23514");
  });

  it("a completed row must say what it holds; a failed row must say why", async () => {
    const e1 = await pgError(
      owner.query("INSERT INTO backup_management (tenant_id, service_name, backup_type, backup_status, storage_bucket, storage_prefix) VALUES ($1, 'c', 'full', 'completed', 'b', 'p')", [T1]),
    );
    expect(e1.message).toMatch(/backup_completed_is_complete/);
    const e2 = await pgError(
      owner.query("INSERT INTO backup_management (tenant_id, service_name, backup_type, backup_status, storage_bucket, storage_prefix) VALUES ($1, 'c', 'full', 'failed', 'b', 'p')", [T1]),
    );
    expect(e2.message).toMatch(/backup_failed_has_reason/);
  });

  it("status only moves forward: a finished run never becomes running again, a failed one completed only when reconciled and proven by its manifest", async () => {
    const id = await insertRow(owner, { service: "flow", status: "completed" });
    const e = await pgError(owner.query("UPDATE backup_management SET backup_status = 'running' WHERE backup_id = $1", [id]));
    expect(e.message).toMatch(/cannot go from completed to running/);
    const id2 = await insertRow(owner, { service: "flow", status: "failed" });
    expect((await pgError(owner.query("UPDATE backup_management SET backup_status = 'completed', completed_at = now(), recovery_point_end = now() WHERE backup_id = $1", [id2]))).message).toMatch(
      /cannot go from failed to completed/,
    );
    // A run reconciled to failed (its agent stopped reporting) comes back only on its manifest's proof.
    const id3 = await insertRow(owner, { service: "flow", status: "failed", extra: { error_message: "reconciled by h pid 1: the agent running it stopped reporting" } });
    const complete = "UPDATE backup_management SET backup_status = 'completed', completed_at = now(), recovery_point_end = now(), backup_size = 1000, metadata = metadata || $2::jsonb WHERE backup_id = $1";
    expect((await pgError(owner.query(complete, [id3, "{}"]))).message).toMatch(/cannot go from failed to completed/);
    expect((await pgError(owner.query(complete, [id2, '{"completedFromManifest": {"was": "failed"}}']))).message).toMatch(/cannot go from failed to completed/);
    await owner.query(complete, [id3, '{"completedFromManifest": {"was": "failed"}}']);
    expect((await owner.query("SELECT backup_status FROM backup_management WHERE backup_id = $1", [id3])).rows[0].backup_status).toBe("completed");
  });

  it("compression_ratio is derived from the two measured sizes, never stored by hand", async () => {
    const id = await insertRow(owner, { service: "ratio", status: "completed", size: 250, extra: { raw_size: 1000 } });
    const r = await owner.query("SELECT compression_ratio::float8 AS r, backup_location FROM backup_management WHERE backup_id = $1", [id]);
    expect(r.rows[0]).toEqual({ r: 0.25, backup_location: "s3://kdr-backups/full/ratio/" });
    const id2 = await insertRow(owner, { service: "ratio", status: "completed", size: 250 });
    expect((await owner.query("SELECT compression_ratio FROM backup_management WHERE backup_id = $1", [id2])).rows[0].compression_ratio).toBeNull();
    const e = await pgError(owner.query("UPDATE backup_management SET compression_ratio = 0.3 WHERE backup_id = $1", [id2]));
    expect(e.message).toMatch(/can only be updated to DEFAULT/);
  });

  it("disaster_recovery_log computes data_loss_minutes and whether RTO/RPO were met", async () => {
    const r = await q.startRecovery(owner, { tenantId: T1, incidentType: "drill", affectedServices: ["pg"], procedure: "kryonix-dr drill", rtoTargetSeconds: 900, rpoTargetSeconds: 60 });
    expect(r.recoveryStatus).toBe("running");
    await q.recordRecoveryPhases(owner, r.recoveryId, { fetch: 1.5 });
    const done = await q.finishRecovery(owner, r.recoveryId, { status: "completed", dataLossSeconds: 75, actualRecoverySeconds: 600, phaseTimings: { restore: 4.25 } });
    expect(done).toMatchObject({ dataLossMinutes: 2, rtoMet: true, rpoMet: false, actualRecoverySeconds: 600, phaseTimings: { fetch: 1.5, restore: 4.25 }, recoveryStatus: "completed" });
    await expect(q.finishRecovery(owner, r.recoveryId, { status: "completed" })).rejects.toThrow(/already finished/);
    // The review afterwards: lessons are added below what is there, each with its date.
    await q.addLessons(owner, r.recoveryId, "WAL switch every 30 s was too slow for this service");
    const after = await q.addLessons(owner, r.recoveryId, "  alert reached on-call after 4 min  ");
    expect(after.lessonsLearned).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}Z: WAL switch every 30 s was too slow for this service\n\d{4}-\d{2}-\d{2}T\d{2}:\d{2}Z: alert reached on-call after 4 min$/);
    expect(after.recoveryStatus).toBe("completed");
    await expect(q.addLessons(owner, r.recoveryId, " ")).rejects.toThrow(/lessons learnt are empty/);
    await expect(q.addLessons(owner, "00000000-0000-4000-8000-000000000999", "x")).rejects.toThrow(/no recovery .* 'kryonix-dr status' lists/);
  });

  it("a completed recovery records the recovery test and its measured time on each service's health row", async () => {
    await insertRow(owner, { service: "drilled", status: "completed" });
    const r = await q.startRecovery(owner, { tenantId: T1, incidentType: "drill", affectedServices: ["drilled", "drilled-too", "drilled"], procedure: "drill" });
    expect((await q.serviceHealth(owner, { service: "drilled", tenantId: T1 }))[0]!.lastRecoveryTest).toBeNull();
    await q.finishRecovery(owner, r.recoveryId, { status: "completed", actualRecoverySeconds: 321 });
    for (const svc of ["drilled", "drilled-too"]) {
      const h = (await q.serviceHealth(owner, { service: svc, tenantId: T1 }))[0]!;
      expect(h.lastRecoveryTest).toBeInstanceOf(Date);
      expect(h.estimatedFullRecoverySeconds).toBe(321);
    }
    // A failed recovery proves nothing.
    const f = await q.startRecovery(owner, { tenantId: T1, incidentType: "drill", affectedServices: ["drill-failed"], procedure: "drill" });
    await q.finishRecovery(owner, f.recoveryId, { status: "failed", error: "restore refused: checksum mismatch" });
    expect(await q.serviceHealth(owner, { service: "drill-failed" })).toEqual([]);
  });

  it("health settings follow the configured schedule: staleness is judged against twice the frequency", async () => {
    await insertRow(owner, { service: "hourly", status: "completed", completedAgo: "3 hours" });
    const id = (await owner.query("SELECT backup_id FROM backup_management WHERE service_name = 'hourly'")).rows[0].backup_id;
    await q.recordVerification(owner, id, { status: "passed" });
    expect((await q.serviceHealth(owner, { service: "hourly" }))[0]!.effectiveStatus).toBe("healthy");
    await q.setHealthSettings(owner, { tenantId: T1, service: "hourly", backupFrequencySeconds: 3600, storageQuotaGb: 50 });
    expect((await q.serviceHealth(owner, { service: "hourly" }))[0]).toMatchObject({ effectiveStatus: "stale", backupFrequencySeconds: 3600, storageQuotaGb: 50 });
    await expect(q.setHealthSettings(owner, { tenantId: T1, service: "hourly", backupFrequencySeconds: 0 })).rejects.toThrow(/must be > 0/);
  });
});

describe("roles", () => {
  let writer: pg.Pool;
  let reader: pg.Pool;

  beforeAll(async () => {
    // LOGIN roles as the Pulumi program declares them: members of the migration's group roles.
    await owner.query("CREATE ROLE kdrtest_agent LOGIN PASSWORD 'agent-pw' IN ROLE kryonix_dr_writer");
    await owner.query("CREATE ROLE kdrtest_dash LOGIN PASSWORD 'dash-pw' IN ROLE kryonix_dr_reader");
    const base = { host: server.host, port: server.port, database: "postgres", max: 2 };
    writer = new pg.Pool({ ...base, user: "kdrtest_agent", password: "agent-pw" });
    reader = new pg.Pool({ ...base, user: "kdrtest_dash", password: "dash-pw" });
    pools.push(writer, reader);
  });

  it("the writer can run a whole backup lifecycle through catalog/queries (trigger included)", async () => {
    const b = await q.createBackup(writer, { tenantId: T1, service: "as-writer", type: "full", bucket: "kdr", prefix: "full/as-writer/" });
    await q.markRunning(writer, b.backupId);
    expect(await q.heartbeat(writer, b.backupId)).toBe(true);
    const done = await q.completeBackup(writer, b.backupId, {
      rawSize: 2000, storedSize: 500, recoveryPointEnd: new Date(),
      artifacts: [{ role: "base", objectKey: "full/as-writer/base.tar.zst.age", sha256: HEX, sizeBytes: 500, rawSize: 2000 }],
    });
    expect(done.compressionRatio).toBe(0.25);
    await q.recordVerification(writer, b.backupId, { status: "passed" });
    const seg = { tenantId: T1, service: "as-writer", timeline: 1, segmentName: "000000010000000000000001", objectKey: "wal/as-writer/1", sha256: HEX, sizeBytes: 10, coversUntil: new Date() };
    expect((await q.recordWalSegment(writer, seg)).inserted).toBe(true);
    expect((await q.recordWalSegment(writer, seg)).inserted).toBe(false);
    expect((await q.serviceHealth(writer, { service: "as-writer" }))[0]).toMatchObject({ backupStreak: 1, effectiveStatus: "healthy" });
    const r = await q.startRecovery(writer, { tenantId: T1, incidentType: "drill", affectedServices: ["as-writer"], procedure: "drill" });
    await q.finishRecovery(writer, r.recoveryId, { status: "completed" });
    await q.reconcileStaleRuns(writer, { service: "as-writer", staleAfterSeconds: 0 });
    expect((await q.backupMetrics(writer, T1)).some((m) => m.serviceName === "as-writer")).toBe(true);
  });

  it("the writer cannot DELETE, TRUNCATE or run DDL", async () => {
    for (const sql of [
      "DELETE FROM backup_management",
      "DELETE FROM wal_segment",
      "DELETE FROM backup_artifact",
      "TRUNCATE backup_management CASCADE",
      "DELETE FROM schema_migrations",
      "INSERT INTO schema_migrations (filename, sha256, duration_ms) VALUES ('999_x.sql', repeat('a', 64), 1)",
    ]) {
      expect((await pgError(writer.query(sql))).code, sql).toBe("42501");
    }
    for (const sql of [
      "CREATE TABLE kdr_evil (id int)",
      "ALTER TABLE backup_management DROP CONSTRAINT backup_management_checksum_check",
      "DROP TABLE backup_artifact",
      "CREATE OR REPLACE FUNCTION calculate_backup_metrics(p uuid) RETURNS int LANGUAGE sql AS 'SELECT 1'",
      "DROP TRIGGER backup_status_health_trigger ON backup_management",
    ]) {
      expect(["42501"], sql).toContain((await pgError(writer.query(sql))).code);
    }
  });

  it("the reader can read and run the metrics, and cannot write anything", async () => {
    expect((await reader.query("SELECT count(*) FROM backup_management")).rows[0].count).not.toBe("0");
    expect((await reader.query("SELECT count(*) FROM backup_health")).rows.length).toBe(1);
    expect((await q.backupMetrics(reader, T1)).length).toBeGreaterThan(0);
    for (const sql of [
      `INSERT INTO backup_management (tenant_id, service_name, backup_type, storage_bucket, storage_prefix) VALUES ('${T1}', 'r', 'full', 'b', 'p')`,
      "UPDATE backup_management SET metadata = '{}'",
      "DELETE FROM disaster_recovery_log",
      `INSERT INTO disaster_recovery_log (tenant_id, incident_type, recovery_procedure) VALUES ('${T1}', 'x', 'y')`,
      "UPDATE backup_health_monitoring SET health_status = 'healthy'",
      "CREATE TABLE kdr_evil (id int)",
    ]) {
      expect((await pgError(reader.query(sql))).code, sql).toBe("42501");
    }
  });

  it("re-running the migrations keeps existing roles and grants", async () => {
    const c = await owner.connect();
    try {
      const r = await migrate(c, { dir: MIGRATIONS });
      expect(r.applied).toEqual([]);
    } finally {
      c.release();
    }
    expect((await writer.query("SELECT count(*) FROM backup_artifact")).rows.length).toBe(1);
  });
});
