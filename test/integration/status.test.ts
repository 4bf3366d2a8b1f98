/**
 * `kryonix-dr status` against a real PostgreSQL 15 catalog filled through catalog/queries.ts:
 * the real CLI process, its text and --json output, its exit codes, and a login role that is
 * only a member of kryonix_dr_reader.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrate } from "../../catalog/migrate.js";
import * as q from "../../catalog/queries.js";
import type { StatusReport, ServiceStatus } from "../../cli/commands/status.js";
import { Settings } from "../../agent/config.js";
import { runHealth } from "../../agent/commands/health.js";
import { startTmpPostgres, type TmpPostgres } from "../support/tmp-postgres.js";

const ROOT = join(__dirname, "..", "..");
const CLI = join(ROOT, "bin", "kryonix-dr.mjs");
const DB = "kdrtest_status";
/** Tenant A: every service fine. Tenant B: every way a service can need attention. */
const A = "aaaaaaaa-0000-4000-8000-00000000000a";
const B = "bbbbbbbb-0000-4000-8000-00000000000b";
const sha = (n: number) => n.toString(16).padStart(64, "0");

let server: TmpPostgres;
let db: pg.Pool;
let now: Date;
const ago = (s: number) => new Date(now.getTime() - s * 1000);
const ids: Record<string, string> = {};

async function completed(
  tenantId: string,
  service: string,
  engine: "postgres" | "redis" | "volume",
  o: { rpAgo: number; raw: number; stored: number; lsn?: [string, string]; verify?: q.VerifyStatus; type?: q.BackupType; parent?: string },
): Promise<q.BackupRow> {
  const b = await q.createBackup(db, { tenantId, service, type: o.type ?? "full", engine, bucket: "kdr-primary", prefix: `full/${service}/x/`, parentBackupId: o.parent });
  await q.markRunning(db, b.backupId);
  const row = await q.completeBackup(db, b.backupId, {
    rawSize: o.raw, storedSize: o.stored, recoveryPointEnd: ago(o.rpAgo),
    ...(o.lsn ? { timeline: 1, startLsn: o.lsn[0], endLsn: o.lsn[1] } : {}),
    artifacts: [{ role: "base", objectKey: `full/${service}/${b.backupId}/base`, sha256: sha(1), sizeBytes: o.stored, rawSize: o.raw }],
  });
  if (o.verify) await q.recordVerification(db, b.backupId, { status: o.verify, details: { test: true } });
  return row;
}

async function failed(tenantId: string, service: string, engine: "postgres" | "redis" | "volume", error: string): Promise<q.BackupRow> {
  const b = await q.createBackup(db, { tenantId, service, type: "full", engine, bucket: "kdr-primary", prefix: `full/${service}/y/` });
  await q.markRunning(db, b.backupId);
  return q.failBackup(db, b.backupId, error);
}

/** Runs the real CLI asynchronously (a synchronous spawn starves vitest's RPC). */
function status(args: string[], env: Record<string, string> = {}, cmd = "status"): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PG")));
  const pgEnv = { PGHOST: server.host, PGPORT: String(server.port), PGDATABASE: DB, PGUSER: server.user, PGPASSWORD: server.password, PGSSLMODE: "disable" };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, cmd, ...args], { cwd: ROOT, env: { ...clean, ...pgEnv, ...env }, stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const svc = (r: StatusReport, tenant: string, name: string): ServiceStatus => {
  const s = r.tenants.find((t) => t.tenantId === tenant)?.services.find((x) => x.service === name);
  if (!s) throw new Error(`no ${name} in tenant ${tenant}: ${JSON.stringify(r.tenants.map((t) => t.services.map((x) => x.service)))}`);
  return s;
};

beforeAll(async () => {
  server = await startTmpPostgres();
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${DB}`);
  await admin.query(`CREATE DATABASE ${DB}_empty`);
  await admin.end();
  const empty = new pg.Client({ connectionString: server.urlFor(`${DB}_empty`) });
  await empty.connect();
  await migrate(empty, { dir: join(ROOT, "catalog", "migrations") });
  await empty.end();
  db = new pg.Pool({ connectionString: server.urlFor(DB), max: 2 });
  const c = await db.connect();
  try {
    await migrate(c, { dir: join(ROOT, "catalog", "migrations") });
  } finally {
    c.release();
  }
  now = (await db.query<{ now: Date }>("SELECT now() AS now")).rows[0]!.now;

  // Tenant A. orders-db: a verified base plus two archived WAL segments after it, so a restore
  // reaches past the base (to the second segment's covers_until, 120 s ago).
  const base = await completed(A, "orders-db", "postgres", { rpAgo: 600, raw: 4000, stored: 1000, lsn: ["0/3000028", "0/3000138"], verify: "passed" });
  ids.ordersBase = base.backupId;
  for (const [segno, coversAgo] of [[3, 300], [4, 120]] as const) {
    const name = q.walFileName(1, BigInt(segno));
    await q.recordWalSegment(db, { tenantId: A, service: "orders-db", timeline: 1, segmentName: name, objectKey: `wal/orders-db/${name}`, sha256: sha(100 + segno), sizeBytes: 2048, rawSize: 16 * 1024 * 1024, coversUntil: ago(coversAgo) });
  }
  // The replicator copied orders-db's WAL segment 3 to the DR region (stored 300 s ago).
  await q.recordCopy(db, { endpoint: "http://dr.example:7481", region: "dr-east", bucket: "b", key: `wal/orders-db/${q.walFileName(1, 3n)}`, sourceBucket: "b", sourceVersionId: "v3", copyVersionId: "c3", sourceCreatedAt: ago(300), sizeBytes: 2048 });
  // files: verified, then one failed run: degraded, which is still fine to be on call with.
  ids.filesOk = (await completed(A, "files", "volume", { rpAgo: 900, raw: 1000, stored: 500, verify: "passed" })).backupId;
  ids.filesFail = (await failed(A, "files", "volume", "restic: repository is locked by pid 42")).backupId;
  const drill = await q.startRecovery(db, { tenantId: A, incidentType: "drill", affectedServices: ["orders-db", "files"], procedure: "kryonix-dr drill", target: "latest", rtoTargetSeconds: 900, rpoTargetSeconds: 60 });
  await q.finishRecovery(db, drill.recoveryId, { status: "completed", actualRecoverySeconds: 42, dataLossSeconds: 2.5 });

  // Tenant B. sessions: a verified backup, a newer one a verify failed, then two failed runs.
  ids.sessionsGood = (await completed(B, "sessions", "redis", { rpAgo: 3000, raw: 800, stored: 200, verify: "passed" })).backupId;
  ids.sessionsBad = (await completed(B, "sessions", "redis", { rpAgo: 2000, raw: 800, stored: 400, verify: "failed" })).backupId;
  await failed(B, "sessions", "redis", "redis: BGSAVE refused");
  ids.sessionsLastFail = (await failed(B, "sessions", "redis", "redis: connection refused by 10.0.0.7:6379")).backupId;
  // reports-db: completed, never verified.
  ids.reports = (await completed(B, "reports-db", "postgres", { rpAgo: 400, raw: 5000, stored: 1000 })).backupId;
  // ledger-db: a verified incremental whose parent full failed its verify: the chain is broken.
  ids.ledgerFull = (await completed(B, "ledger-db", "volume", { rpAgo: 1200, raw: 100, stored: 100, verify: "failed" })).backupId;
  ids.ledgerIncr = (await completed(B, "ledger-db", "volume", { rpAgo: 600, raw: 100, stored: 10, verify: "passed", type: "differential", parent: ids.ledgerFull })).backupId;
  // archive: verified, but its schedule (a few ms here) has passed twice since: backup_health says stale.
  await completed(B, "archive", "volume", { rpAgo: 60, raw: 100, stored: 50, verify: "passed" });
  await q.setHealthSettings(db, { tenantId: B, service: "archive", backupFrequencySeconds: 0.001 });
  // uploads: no completed backup, one failed run and one still running.
  await failed(B, "uploads", "volume", "restic: no space left on device");
  const running = await q.createBackup(db, { tenantId: B, service: "uploads", type: "full", engine: "volume", bucket: "kdr-primary", prefix: "full/uploads/z/" });
  await q.markRunning(db, running.backupId);
  // A second run whose agent died 20 minutes ago without a word.
  const dead = await q.createBackup(db, { tenantId: B, service: "uploads", type: "full", engine: "volume", bucket: "kdr-primary", prefix: "full/uploads/d/" });
  await q.markRunning(db, dead.backupId);
  await db.query("UPDATE backup_management SET heartbeat_at = now() - interval '20 minutes' WHERE backup_id = $1", [dead.backupId]);
  const failedRecovery = await q.startRecovery(db, { tenantId: B, incidentType: "node_failure", affectedServices: ["sessions"], procedure: "runbook 3", rtoTargetSeconds: 600, rpoTargetSeconds: 300 });
  await q.finishRecovery(db, failedRecovery.recoveryId, { status: "failed", error: "restore container exited 1", actualRecoverySeconds: 700 });

  // A login role with nothing but the dashboards' group role.
  await db.query("CREATE ROLE kdrtest_status_reader LOGIN PASSWORD 'reader-pw' IN ROLE kryonix_dr_reader");
}, 120_000);

afterAll(async () => {
  await db?.end();
  await server?.stop();
});

describe("kryonix-dr status", () => {
  it("an all-healthy tenant: exit 0, restore point follows the WAL, degraded is fine, drill shown", async () => {
    const r = await status(["--tenant", A, "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout) as StatusReport;
    expect(rep.healthy).toBe(true);
    expect(rep.tenants.map((t) => t.tenantId)).toEqual([A]);
    const orders = svc(rep, A, "orders-db");
    expect(orders).toMatchObject({
      engine: "postgres", effectiveStatus: "healthy", ok: true, attention: [], restoreProblem: null, verifyFailures: 0,
      runningRuns: 0, runningSilentSeconds: null, completedBackups: 1, storedBytes: 1000, avgCompressionRatio: 0.25, lastFailure: null, stale: false,
      restorable: { recoveryPoint: ago(120).toISOString(), baseBackupId: ids.ordersBase, baseType: "full", chainLength: 1, walSegments: 2 },
      newestCompleted: { backupId: ids.ordersBase, type: "full", recoveryPoint: ago(600).toISOString() },
      newestVerified: { backupId: ids.ordersBase, recoveryPoint: ago(600).toISOString() },
    });
    // Ages are against the catalog's clock, which has moved on a little since `now`.
    expect(orders.drCopies).toEqual([expect.objectContaining({ region: "dr-east", copies: 1, newestCopiedSourceAt: ago(300).toISOString() })]);
    expect(orders.restorable!.ageSeconds).toBeGreaterThanOrEqual(120);
    expect(orders.restorable!.ageSeconds).toBeLessThan(120 + 60);
    const files = svc(rep, A, "files");
    expect(files).toMatchObject({
      engine: "volume", effectiveStatus: "degraded", ok: true, storedBytes: 500, avgCompressionRatio: 0.5,
      restorable: { recoveryPoint: ago(900).toISOString(), baseBackupId: ids.filesOk, walSegments: 0 },
      lastFailure: { backupId: ids.filesFail, error: "restic: repository is locked by pid 42" },
    });
    expect(rep.tenants[0]!.recoveries).toEqual([
      expect.objectContaining({ status: "completed", incidentType: "drill", services: ["orders-db", "files"], recoverySeconds: 42, rtoTargetSeconds: 900, rtoMet: true, dataLossSeconds: 2.5, rpoTargetSeconds: 60, rpoMet: true, error: null }),
    ]);

    const text = await status(["--tenant", A]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`tenant ${A}: 2 service(s), 0 need attention`);
    expect(text.stdout).toMatch(/^SERVICE\s+ENGINE\s+STATUS\s+RESTORE AGE/m);
    expect(text.stdout).toMatch(/^orders-db\s+postgres\s+healthy\s+2 min \d+ s\s+full, /m);
    expect(text.stdout).toContain(`orders-db: restores to ${ago(120).toISOString()} from full ${ids.ordersBase} + 2 WAL segment(s)`);
    expect(text.stdout).toMatch(/orders-db: 1 object\(s\) copied to region dr-east; the newest copied was stored 5 min \d+ s ago/);
    expect(text.stdout).toContain("files: newest run FAILED at");
    expect(text.stdout).toContain("restic: repository is locked by pid 42");
    expect(text.stdout).toMatch(/drill\s+completed\s+orders-db,files\s+42\.0 s \/ 15 min 0 s\s+met\s+2\.5 s \/ 1 min 0 s\s+met\s+[0-9a-f-]{36}$/m);
    expect(text.stdout.trimEnd().endsWith("all services healthy")).toBe(true);
  });

  it("--max-age marks a service whose restorable point is older as STALE (exit 1)", async () => {
    const r = await status(["--tenant", A, "--max-age", "200", "--json"]);
    expect(r.code).toBe(1);
    const rep = JSON.parse(r.stdout) as StatusReport;
    expect(rep.maxAgeSeconds).toBe(200);
    expect(svc(rep, A, "orders-db")).toMatchObject({ stale: false, ok: true });
    expect(svc(rep, A, "files")).toMatchObject({ stale: true, ok: false });
    expect(svc(rep, A, "files").attention.join("\n")).toMatch(/STALE: a restore now reaches .* \(over --max-age 3 min 20 s\): run kdr-agent backup/);
    const text = await status(["--tenant", A, "--max-age", "200"]);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/^files\s+volume\s+STALE\s/m);
    expect(text.stdout).toMatch(/needs attention:\n {2}- files: STALE: /);
    expect((await status(["--tenant", A, "--max-age", "3600"])).code).toBe(0);
  });

  it("every kind of trouble: exit 1 and a needs-attention list saying what to do", async () => {
    const r = await status(["--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(1);
    const rep = JSON.parse(r.stdout) as StatusReport;
    expect(rep.healthy).toBe(false);
    expect(rep.tenants.map((t) => t.tenantId)).toEqual([A, B]);

    const archive = svc(rep, B, "archive");
    expect(archive).toMatchObject({ effectiveStatus: "stale", ok: false, restoreProblem: null, lastFailure: null });
    expect(archive.attention).toEqual([expect.stringMatching(/^stale: no successful backup within twice the schedule \(0\.0 s\): check the sidecar's schedule and run kdr-agent backup --type full$/)]);

    const sessions = svc(rep, B, "sessions");
    expect(sessions).toMatchObject({
      effectiveStatus: "warning", ok: false, verifyFailures: 1, completedBackups: 2, storedBytes: 600, avgCompressionRatio: 0.375,
      // The newer backup failed its verify, so a restore uses the older verified one.
      restorable: { baseBackupId: ids.sessionsGood, recoveryPoint: ago(3000).toISOString() },
      newestCompleted: { backupId: ids.sessionsBad }, newestVerified: { backupId: ids.sessionsGood },
      lastFailure: { backupId: ids.sessionsLastFail, error: "redis: connection refused by 10.0.0.7:6379" },
    });
    expect(sessions.attention.join("\n")).toMatch(/newest run failed \(2 in a row\): redis: connection refused/);
    expect(sessions.attention.join("\n")).toMatch(/verify failed on 1 backup\(s\).*kdr-agent verify/);

    const reports = svc(rep, B, "reports-db");
    expect(reports).toMatchObject({ effectiveStatus: "unverified", ok: false, newestVerified: null, restorable: { baseBackupId: ids.reports }, lastFailure: null });
    expect(reports.attention).toEqual(["unverified: no backup has passed a verify: run kdr-agent verify"]);

    const ledger = svc(rep, B, "ledger-db");
    expect(ledger).toMatchObject({ effectiveStatus: "healthy", ok: false, restorable: null, verifyFailures: 1, newestVerified: { backupId: ids.ledgerIncr } });
    expect(ledger.restoreProblem).toMatch(new RegExp(`^backup ${ids.ledgerIncr} of 'ledger-db' needs its parent ${ids.ledgerFull}, which is completed and failed verification: the chain is broken`));
    expect(ledger.attention).toEqual([`no restore plan: ${ledger.restoreProblem}`]);

    const uploads = svc(rep, B, "uploads");
    expect(uploads).toMatchObject({ engine: "volume", ok: false, restorable: null, completedBackups: 0, runningRuns: 2, storedBytes: 0, avgCompressionRatio: null, newestCompleted: null });
    expect(uploads.restoreProblem).toMatch(/^no completed full\/incremental\/differential backup of 'uploads'/);
    expect(uploads.runningSilentSeconds).toBeGreaterThanOrEqual(1200);
    expect(uploads.attention[0]).toBe("no backup to restore from: run kdr-agent backup --type full in its sidecar");
    expect(uploads.attention).toContainEqual(expect.stringMatching(/^a run has not reported for 20 min \d+ s \(its agent is presumably dead\)/));

    expect(rep.tenants[1]!.recoveries).toEqual([
      expect.objectContaining({ status: "failed", incidentType: "node_failure", recoverySeconds: 700, rtoTargetSeconds: 600, rtoMet: false, rpoMet: null, error: "restore container exited 1" }),
    ]);

    const text = await status([]);
    expect(text.code).toBe(1);
    const out = text.stdout;
    expect(out).toContain(`tenant ${B}: 5 service(s), 5 need attention`);
    expect(out).toMatch(/^ledger-db\s+volume\s+NO-RESTORE\s+-\s+differential, /m);
    expect(out).toMatch(/^uploads\s+volume\s+NO-RESTORE\s+-\s+none\s/m);
    expect(out).toContain("uploads: cannot restore: no completed full/incremental/differential backup of 'uploads'");
    expect(out).toMatch(/node_failure\s+failed\s+sessions\s+11 min 40 s \/ 10 min 0 s\s+MISSED/);
    expect(out).toContain("node_failure");
    expect(out).toContain("failed: restore container exited 1");
    const attention = out.slice(out.indexOf("needs attention:"));
    expect(attention).toContain(`- reports-db (tenant ${B}): unverified: no backup has passed a verify: run kdr-agent verify`);
    expect(attention).toContain(`- uploads (tenant ${B}): no backup to restore from: run kdr-agent backup --type full`);
    expect(attention).toContain(`- sessions (tenant ${B}): newest run failed (2 in a row): redis: connection refused`);
    expect(attention).toContain(`- ledger-db (tenant ${B}): no restore plan: backup ${ids.ledgerIncr} of 'ledger-db' needs its parent`);
    expect(attention).toContain(`- archive (tenant ${B}): stale: no successful backup within twice the schedule`);
    expect(attention).not.toContain("orders-db");
  });

  it("a login role that is only in kryonix_dr_reader sees the same report", async () => {
    const asReader = await status(["--tenant", A, "--json"], { PGUSER: "kdrtest_status_reader", PGPASSWORD: "reader-pw" });
    expect(asReader.stderr).toBe("");
    expect(asReader.code).toBe(0);
    const owner = JSON.parse((await status(["--tenant", A, "--json"])).stdout) as StatusReport;
    const reader = JSON.parse(asReader.stdout) as StatusReport;
    // Ages and the catalog time move between the two runs; the facts must not.
    const facts = (r: StatusReport) => r.tenants.map((t) => ({ ...t, services: t.services.map((s) => ({ ...s, restorable: { ...s.restorable, ageSeconds: 0 }, newestCompleted: { ...s.newestCompleted, ageSeconds: 0 }, newestVerified: { ...s.newestVerified, ageSeconds: 0 }, lastFailure: s.lastFailure && { ...s.lastFailure, ageSeconds: 0 }, drCopies: s.drCopies.map((c) => ({ ...c, newestCopiedAgeSeconds: 0 })) })) }));
    expect(facts(reader)).toEqual(facts(owner));
  });

  it("usage errors exit 2 naming the flag; a missing connection, an empty catalog and an unknown tenant are named", async () => {
    const badFlag = await status(["--bogus"]);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toContain("Unknown option '--bogus'");
    const badAge = await status(["--max-age", "soon"]);
    expect(badAge.code).toBe(2);
    expect(badAge.stderr).toContain("--max-age 'soon' must be a whole number >= 1 of seconds");
    const badTenant = await status(["--tenant", "acme"]);
    expect(badTenant.code).toBe(2);
    expect(badTenant.stderr).toContain("--tenant 'acme' is not a UUID");
    const unknown = await status(["--tenant", "cccccccc-0000-4000-8000-00000000000c"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stdout).toContain("tenant cccccccc-0000-4000-8000-00000000000c: 0 service(s), 0 need attention");
    expect(unknown.stdout).toContain("- no service is recorded in the catalog for tenant cccccccc-0000-4000-8000-00000000000c: check the tenant id");
    const empty = await status([], { PGDATABASE: `${DB}_empty` });
    expect(empty.code).toBe(1);
    expect(empty.stdout).toContain("the catalog has no services yet: no backup has been recorded.");
    expect(empty.stdout).toContain("- no service is recorded in the catalog: check the tenant id, or deploy the backup sidecars");
    const noConn = await status([], { PGHOST: "", PGDATABASE: "", PGUSER: "" });
    expect(noConn.code).toBe(1);
    expect(noConn.stderr).toContain("Missing environment variable(s) PGHOST, PGDATABASE, PGUSER");
    const notCatalog = await status([], { PGDATABASE: "postgres" });
    expect(notCatalog.code).toBe(1);
    expect(notCatalog.stderr).toContain("the catalog schema is missing in database 'postgres'");
    expect(notCatalog.stderr).toContain("kryonix-dr migrate");
  });
});

describe("kryonix-dr status: warm standbys against the RPO", () => {
  const D = "dddddddd-0000-4000-8000-00000000000d";
  const look = (x: Partial<q.StandbyReport>): q.StandbyReport => ({
    tenantId: D, service: "billing-db", region: "dr-east", engine: "postgres", standbyHost: "kdr-dr-billing-db", primaryHost: "billing-db",
    state: "following", streaming: true, lagBytes: 0, lagSeconds: 0, lastReplayedAt: ago(3), rpoTargetSeconds: 300, reportIntervalSeconds: 5, detail: null, ...x,
  });

  it("a streaming standby within the RPO is shown and fine; over the RPO, or a follower gone silent, needs attention (exit 1); the reader role sees it", async () => {
    await completed(D, "billing-db", "postgres", { rpAgo: 60, raw: 4000, stored: 1000, lsn: ["0/5000028", "0/5000138"], verify: "passed" });
    await q.reportStandby(db, look({ lagBytes: 512, lagSeconds: 1.2 }));
    const fine = await status(["--tenant", D, "--json"]);
    expect(fine.code, fine.stdout).toBe(0);
    const billing = svc(JSON.parse(fine.stdout) as StatusReport, D, "billing-db");
    expect(billing.standbys).toEqual([
      expect.objectContaining({ region: "dr-east", standbyHost: "kdr-dr-billing-db", state: "following", streaming: true, lagSeconds: 1.2, lagBytes: 512, rpoTargetSeconds: 300, ok: true }),
    ]);
    const text = await status(["--tenant", D], { PGUSER: "kdrtest_status_reader", PGPASSWORD: "reader-pw" });
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/billing-db: the PostgreSQL standby kdr-dr-billing-db of 'billing-db' \(dr-east\) streams from billing-db, 1 s \/ 512 bytes behind \(RPO 300 s\); reported \d+(\.\d)? s ago/);

    // The next look: the standby stopped streaming and fell behind further than the RPO.
    await q.reportStandby(db, look({ streaming: false, lagBytes: 90_000_000, lagSeconds: 420 }));
    const behind = await status(["--tenant", D]);
    expect(behind.code).toBe(1);
    expect(behind.stdout).toContain("billing-db: BEHIND: the PostgreSQL standby kdr-dr-billing-db of 'billing-db' (dr-east) does not stream (it replays the WAL copied to this region), 420 s / 90000000 bytes behind: over the RPO of 300 s");
    expect(behind.stdout).toMatch(/needs attention:\n {2}- billing-db: standby: the PostgreSQL standby .* over the RPO of 300 s; promoting it now would lose that much/);

    // Caught up again, but its follower stopped reporting a minute ago.
    await q.reportStandby(db, look({}));
    await db.query("UPDATE standby_status SET reported_at = now() - interval '60 seconds' WHERE tenant_id = $1", [D]);
    const silent = JSON.parse((await status(["--tenant", D, "--json"])).stdout) as StatusReport;
    expect(svc(silent, D, "billing-db").attention).toEqual([expect.stringMatching(/^standby: the PostgreSQL standby kdr-dr-billing-db of 'billing-db' \(dr-east\): its follower last reported 6\d s ago: see 'docker service logs kdr-dr-billing-db-follower'$/)]);
    expect(silent.healthy).toBe(false);

    // The dr region's health job judges the same row (its region's); the primary region's has no standby.
    const health = (region: string) =>
      runHealth(new Settings(new Map(), { KDR_SERVICE: "billing-db", KDR_ENGINE: "postgres", KDR_TENANT_ID: D, KDR_S3_REGION: region, KDR_RPO_SECONDS: "300" }), db as unknown as pg.Client);
    const dr = await health("dr-east");
    expect(dr).toMatchObject({ healthy: false, standby: { ok: false, state: "following", lagSeconds: 0 } });
    expect(dr.message).toMatch(/^ok: the newest verified recovery point of 'billing-db' is .* old \(RPO 5 min 0 s\)\nBEHIND: the PostgreSQL standby kdr-dr-billing-db .* its follower last reported 6\d s ago/);
    await q.reportStandby(db, look({ lagBytes: 64, lagSeconds: 0.4 }));
    expect(await health("dr-east")).toMatchObject({ healthy: true, standby: { ok: true, lagBytes: 64 } });
    const primary = await health("primary-west");
    expect(primary.healthy).toBe(true);
    expect(primary.standby).toBeUndefined();

    // Promoted: the activation marks the row. A late look of the follower that ran then (even one
    // saying `following`, measured before the promotion), or of that follower restarted against
    // the promoted server, does not replace it, and its silence is no trouble.
    await q.reportStandby(db, look({ reporter: "follower-1" }));
    await q.markStandbyPromoted(db, { tenantId: D, service: "billing-db", region: "dr-east" });
    await q.reportStandby(db, look({ reporter: "follower-1" }));
    await q.reportStandby(db, look({ state: "unreachable", streaming: false, lagBytes: null, lagSeconds: null, detail: "connection refused", reporter: "follower-1-restarted" }));
    await db.query("UPDATE standby_status SET reported_at = now() - interval '1 hour' WHERE tenant_id = $1", [D]);
    const promoted = svc(JSON.parse((await status(["--tenant", D, "--json"])).stdout) as StatusReport, D, "billing-db");
    expect(promoted.standbys).toEqual([expect.objectContaining({ state: "promoted", ok: true, message: expect.stringMatching(/is promoted: a primary now \(promoted by kdr-agent standby activate at \d{4}-/) })]);
    expect(promoted.attention).toEqual([]);
    // A follower stopping withdraws its row, but not a promoted one's.
    await q.withdrawStandby(db, { tenantId: D, service: "billing-db", region: "dr-east" });
    expect(await q.listStandbys(db, { tenantId: D })).toEqual([expect.objectContaining({ state: "promoted" })]);
    // Seeded again later (a failback): a new follower's look makes it a standby's row again.
    await q.reportStandby(db, look({ lagBytes: 8, lagSeconds: 0.1, reporter: "follower-2" }));
    expect(svc(JSON.parse((await status(["--tenant", D, "--json"])).stdout) as StatusReport, D, "billing-db").standbys).toEqual([expect.objectContaining({ state: "following", lagBytes: 8, ok: true })]);
    // That one stopping on purpose withdraws it: nothing is judged of a standby that no longer runs.
    await q.withdrawStandby(db, { tenantId: D, service: "billing-db", region: "dr-east" });
    expect(await q.listStandbys(db, { tenantId: D })).toEqual([]);
  });
});

describe("kryonix-dr status: the replicator's backlog against the RPO", () => {
  const E = "eeeeeeee-0000-4000-8000-00000000000e";
  const pass = (pending: Map<string, { objects: number; oldestAt: Date }> | undefined, error: string | null = null): q.ReplicationPass => ({
    sourceEndpoint: "http://rgw-primary:7480/", sourceBucket: "kdr-e-critical", endpoint: "http://rgw-dr:7480", region: "dr-east", bucket: "kdr-e-critical-dr",
    reportIntervalSeconds: 10, pending, error,
  });

  it("a backlog within the RPO is shown and fine; older than the RPO, or a replicator gone silent, needs attention (exit 1), in status and in the dr region's health job", async () => {
    await completed(E, "ledger-db", "postgres", { rpAgo: 30, raw: 4000, stored: 1000, lsn: ["0/6000028", "0/6000138"], verify: "passed" });
    await q.setHealthSettings(db, { tenantId: E, service: "ledger-db", rpoSeconds: 300 });
    // A pass that copied everything: every service it saw has nothing pending.
    await q.reportReplication(db, pass(new Map([["ledger-db", { objects: 0, oldestAt: new Date(0) }]])));
    const fine = JSON.parse((await status(["--tenant", E, "--json"])).stdout) as StatusReport;
    expect(svc(fine, E, "ledger-db").replication).toEqual([
      expect.objectContaining({ region: "dr-east", sourceBucket: "kdr-e-critical", bucket: "kdr-e-critical-dr", pendingObjects: 0, oldestPendingAgeSeconds: null, lastError: null, ok: true }),
    ]);
    expect(fine.healthy).toBe(true);

    // The DR region went away mid-pass: two versions left, the oldest stored 2 min ago.
    await q.reportReplication(db, pass(new Map([["ledger-db", { objects: 2, oldestAt: ago(120) }]]), "PutObject kdr-e-critical-dr: connect ECONNREFUSED"));
    const within = await status(["--tenant", E]);
    expect(within.code, within.stdout).toBe(0);
    expect(within.stdout).toMatch(/ledger-db: the copy of 'ledger-db' in region dr-east \(kdr-e-critical -> kdr-e-critical-dr\): 2 object version\(s\) not copied yet, the oldest stored 1\d\d s ago \(RPO 300 s\); its last pass stopped: PutObject kdr-e-critical-dr: connect ECONNREFUSED/);

    // Still gone 7 min later: over the RPO. The next pass could not list the source either: the counts stay.
    await q.reportReplication(db, pass(new Map([["ledger-db", { objects: 5, oldestAt: ago(420) }]]), "PutObject kdr-e-critical-dr: connect ECONNREFUSED"));
    await q.reportReplication(db, pass(undefined, "ListObjectVersions kdr-e-critical: HTTP 503"));
    const behind = await status(["--tenant", E]);
    expect(behind.code).toBe(1);
    expect(behind.stdout).toMatch(
      /needs attention:\n {2}- ledger-db: replication: the copy of 'ledger-db' in region dr-east \(kdr-e-critical -> kdr-e-critical-dr\): 5 object version\(s\) not copied yet, the oldest stored 4\d\d s ago: over the RPO of 300 s, so a restore there would lose more than that; its last pass stopped: ListObjectVersions kdr-e-critical: HTTP 503: see the replicator's log/,
    );

    const health = (region: string) =>
      runHealth(new Settings(new Map(), { KDR_SERVICE: "ledger-db", KDR_ENGINE: "postgres", KDR_TENANT_ID: E, KDR_S3_REGION: region, KDR_RPO_SECONDS: "300" }), db as unknown as pg.Client);
    const dr = await health("dr-east");
    expect(dr).toMatchObject({ healthy: false, replication: [{ ok: false, sourceBucket: "kdr-e-critical", pendingObjects: 5 }] });
    expect(dr.message).toMatch(/^ok: the newest verified recovery point of 'ledger-db' is .*\nBEHIND: the copy of 'ledger-db' in region dr-east .* over the RPO of 300 s/);
    // The primary region's health job: no copies go there.
    expect(await health("primary-west")).toMatchObject({ healthy: true });

    // Caught up; then the replicator stops reporting.
    await q.reportReplication(db, pass(new Map([["ledger-db", { objects: 0, oldestAt: new Date(0) }]])));
    expect((await health("dr-east")).healthy).toBe(true);
    await db.query("UPDATE replication_status SET reported_at = now() - interval '90 seconds' WHERE service_name = 'ledger-db'");
    const silent = JSON.parse((await status(["--tenant", E, "--json"])).stdout) as StatusReport;
    expect(svc(silent, E, "ledger-db").attention).toEqual([expect.stringMatching(/^replication: the copy of 'ledger-db' in region dr-east \(kdr-e-critical -> kdr-e-critical-dr\): its replicator last reported (89|9\d) s ago: see the replicator's log/)]);
    await db.query("DELETE FROM replication_status WHERE service_name = 'ledger-db'");
  });
});

describe("kryonix-dr lessons", () => {
  it("adds what an incident taught, dated, to its row (status shows the id), and refuses what it cannot record", async () => {
    const json = JSON.parse((await status(["--json", "--tenant", A])).stdout) as { tenants: Array<{ recoveries: Array<{ recoveryId: string; incidentType: string }> }> };
    const id = json.tenants[0]!.recoveries.find((r) => r.incidentType === "drill")!.recoveryId;
    expect((await status(["--tenant", A])).stdout).toContain(id);
    const r = await status(["--recovery-id", id, "--text", "restore of files took longer than its fork span"], {}, "lessons");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^recorded on drill ${id} \\(completed\\):\\n\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}Z: restore of files took longer than its fork span$`, "m"));
    const { rows } = await db.query("SELECT lessons_learned FROM disaster_recovery_log WHERE recovery_id = $1", [id]);
    expect(rows[0].lessons_learned).toContain("restore of files took longer than its fork span");
    const unknown = await status(["--recovery-id", "00000000-0000-4000-8000-000000000999", "--text", "x"], {}, "lessons");
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("no recovery 00000000-0000-4000-8000-000000000999 in disaster_recovery_log");
    const noText = await status(["--recovery-id", id], {}, "lessons");
    expect(noText.code).toBe(2);
  });

  it("records an incident handled by hand as a completed recovery with its measured time, and its lessons, in one go", async () => {
    const r = await status(
      ["--incident", "postgres_lost", "--tenant", A, "--services", "orders-db", "--runbook", "runbooks §3",
       "--started", "2026-11-28T10:00:00Z", "--recovered", "2026-11-28T10:12:30Z", "--data-loss-seconds", "40", "--rto-seconds", "900", "--rpo-seconds", "60",
       "--text", "the bad migration was caught by a customer, not an alert"],
      {},
      "lessons",
    );
    expect(r.code, r.stderr).toBe(0);
    const id = /^recorded on postgres_lost ([0-9a-f-]{36}) \(completed\):$/m.exec(r.stdout)![1]!;
    const { rows } = await db.query(
      "SELECT extract(epoch FROM actual_recovery_time)::float8 AS rto, data_loss_seconds::float8 AS loss, rto_met, rpo_met, recovery_procedure, lessons_learned FROM disaster_recovery_log WHERE recovery_id = $1",
      [id],
    );
    expect(rows[0]).toMatchObject({ rto: 750, loss: 40, rto_met: true, rpo_met: true, recovery_procedure: "runbooks §3" });
    expect(rows[0].lessons_learned).toMatch(/Z: the bad migration was caught by a customer, not an alert$/);
    const bad = await status(["--incident", "meteor", "--text", "x"], {}, "lessons");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--incident 'meteor' is not an incident type: use one of platform_down, postgres_lost");
    const backwards = await status(["--incident", "ransomware", "--tenant", A, "--services", "files", "--runbook", "§7", "--started", "2026-11-28T10:00:00Z", "--recovered", "2026-11-28T09:00:00Z", "--text", "x"], {}, "lessons");
    expect(backwards.stderr).toContain("--recovered 2026-11-28T09:00:00Z is before --started 2026-11-28T10:00:00Z");
  });
});
