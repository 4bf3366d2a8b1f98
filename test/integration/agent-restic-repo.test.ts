/**
 * The restic repository lifecycle against real restic 0.14, RGW and PostgreSQL: exactly one init
 * per repository however runs race (two agents, or two jobs of one serve process), recovery
 * from an interrupted init, an orphan key ignored, a damaged repository replaced by a new
 * generation (and reported by the catalog and `status`), and another service's repository
 * refused. The CI failure this prevents: two inits in one prefix, then "config or key ... is
 * damaged: ciphertext verification failed" on every run.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { CopyObjectCommand, DeleteObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatStatus, statusReport } from "../../cli/commands/status.js";
import { restorePolicy, sidecarPolicy } from "../../components/backup-storage.js";
import { readPlatform } from "../../local/platform.js";
import { putUserPolicy } from "../../local/mappings/minio.js";
import { rgwAdmin, type S3Connection } from "../../local/rgw.js";
import { agentWorld, type AgentWorld } from "../support/s3.js";
import { freePort } from "../support/tmp-postgres.js";

let w: AgentWorld;
const region = readPlatform().regions.primary;
const admin: S3Connection = { endpoint: region.loopbackEndpoint, region: region.name, accessKey: region.accessKey, secretKey: region.secretKey };
const users: string[] = [];

beforeAll(async () => {
  w = await agentWorld("kdrtest-restic-repo");
});

afterAll(async () => {
  for (const uid of users) await rgwAdmin(admin, "DELETE", "user", { uid, "purge-data": "false" }).catch(() => undefined);
  await w?.close();
});

/**
 * A secret dir whose S3 keys are those of a fresh RGW user holding exactly the policy the
 * storage component generates: the sidecar's for `service`, or the read-only restore policy.
 */
async function secretsAs(role: "sidecar" | "restore", service: string): Promise<string> {
  const uid = `kdrtest-rr-${role}-${randomBytes(3).toString("hex")}`;
  const secret = randomBytes(24).toString("base64url");
  await rgwAdmin(admin, "PUT", "user", { uid, "display-name": uid, "access-key": uid, "secret-key": secret, "key-type": "s3", "generate-key": "false" });
  users.push(uid);
  const policy = role === "sidecar"
    ? sidecarPolicy(w.bucket.bucket, { name: service, tier: "critical", engine: "volume", retention: { fullDays: 7, incrementalDays: 3, walDays: 3 } })
    : restorePolicy([w.bucket.bucket]);
  await putUserPolicy(admin, uid, role, policy);
  const dir = path.join(w.root, `secrets-${uid}`);
  mkdirSync(dir, { mode: 0o700 });
  for (const f of readdirSync(w.secretDir)) copyFileSync(path.join(w.secretDir, f), path.join(dir, f));
  writeFileSync(path.join(dir, "kdr-s3-access-key"), uid + "\n");
  writeFileSync(path.join(dir, "kdr-s3-secret-key"), secret + "\n");
  return dir;
}

/**
 * A volume with a few files, and the agent env for a volume service over it: backups run with
 * the service's own least-privilege sidecar keys, restores with the read-only restore keys, as
 * in production.
 */
async function volumeService(service: string): Promise<{ env: Record<string, string>; restoreEnv: Record<string, string>; vol: string }> {
  const vol = path.join(w.root, `vol-${service}`);
  mkdirSync(path.join(vol, "d"), { recursive: true });
  for (let i = 0; i < 5; i++) writeFileSync(path.join(vol, "d", `f${i}.bin`), randomBytes(20 * 1024));
  const env = w.env(service, { KDR_ENGINE: "volume", KDR_VOLUME_PATH: vol, KDR_SECRET_DIR: await secretsAs("sidecar", service) });
  const restoreEnv = { ...env, KDR_SECRET_DIR: await secretsAs("restore", service) };
  return { vol, env, restoreEnv };
}

async function keys(prefix: string): Promise<string[]> {
  const r = await w.bucket.client.send(new ListObjectsV2Command({ Bucket: w.bucket.bucket, Prefix: prefix }));
  return (r.Contents ?? []).map((o) => o.Key!);
}

/**
 * restic run directly (as an operator or another tool would), outside the agent: with the bucket
 * admin's keys, or with those in `secretDir` (RGW lets the admin read only the objects it owns).
 */
function resticAt(prefix: string, args: string[], secretDir?: string): string {
  const keys = secretDir
    ? { id: readFileSync(path.join(secretDir, "kdr-s3-access-key"), "utf8").trim(), secret: readFileSync(path.join(secretDir, "kdr-s3-secret-key"), "utf8").trim() }
    : { id: w.bucket.accessKey, secret: w.bucket.secretKey };
  const r = spawnSync("restic", args, {
    encoding: "utf8",
    env: {
      PATH: process.env.PATH,
      HOME: w.root,
      RESTIC_REPOSITORY: `s3:${w.bucket.endpoint}/${w.bucket.bucket}/${prefix.replace(/\/$/, "")}`,
      RESTIC_PASSWORD_FILE: path.join(w.secretDir, "kdr-restic-password"),
      AWS_ACCESS_KEY_ID: keys.id,
      AWS_SECRET_ACCESS_KEY: keys.secret,
      RESTIC_CACHE_DIR: path.join(w.root, "restic-cache-direct"),
    },
  });
  if (r.status !== 0) throw new Error(`restic ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

async function copy(from: string, to: string): Promise<void> {
  await w.bucket.client.send(new CopyObjectCommand({ Bucket: w.bucket.bucket, CopySource: `${w.bucket.bucket}/${from}`, Key: to }));
}

async function repoRows(service: string): Promise<{ generation: number; status: string; failure: string | null; storage_prefix: string; key_id: string | null }[]> {
  return (await w.db.query("SELECT generation, status, failure, storage_prefix, key_id FROM restic_repository WHERE service_name = $1 ORDER BY generation", [service])).rows;
}

async function backup(env: Record<string, string>, type = "full", wait = 0) {
  const r = await w.run(["backup", "--type", type, "--json", ...(wait ? ["--wait", String(wait)] : [])], env, { timeoutMs: 180_000 });
  return { ...r, summary: r.code === 0 ? (JSON.parse(r.stdout) as { backupId: string; type: string; location: string }) : undefined };
}

const initLines = (text: string) => text.split("\n").filter((l) => /initialising repository/.test(l));

describe("restic repository lifecycle", () => {
  it("two agents initialising the same empty prefix at the same instant: one init, the other waits and uses it (5 times)", async () => {
    for (let i = 1; i <= 5; i++) {
      const service = `race-${i}`;
      const { env } = await volumeService(service);
      const [a, b] = await Promise.all([backup(env, "full", 120), backup(env, "incremental", 120)]);
      expect(a.code, a.stderr).toBe(0);
      expect(b.code, b.stderr).toBe(0);
      expect(initLines(a.stderr + b.stderr + a.stdout + b.stdout)).toHaveLength(1);
      const generations = new Set((await keys(`restic/${service}/`)).map((k) => k.split("/")[2]).filter((p) => /^g\d+$/.test(p!)));
      expect([...generations]).toEqual(["g1"]);
      expect(await keys(`restic/${service}/g1/keys/`)).toHaveLength(1);
      const rows = await repoRows(service);
      expect(rows).toMatchObject([{ generation: 1, status: "active" }]);
      // The key restic created is the one pinned, and every later run opens with it.
      expect((await keys(`restic/${service}/g1/keys/`))[0]).toBe(`restic/${service}/g1/keys/${rows[0]!.key_id}`);
      const later = await backup(env, "incremental");
      expect(later.code, later.stderr).toBe(0);
      const done = (await w.db.query("SELECT backup_status FROM backup_management WHERE service_name = $1", [service])).rows.map((r) => r.backup_status);
      expect(done).toEqual(["completed", "completed", "completed"]);
    }
  }, 300_000);

  it("the full and the incremental job of one serve process firing in the same second never overlap, and init once", async () => {
    const service = "serve-race";
    const { env } = await volumeService(service);
    const port = await freePort();
    // Both schedules fire at the same seconds: 0, 5, 10, ...
    const serve = w.start(["serve"], { ...env, KDR_METRICS_PORT: String(port), KDR_SCHEDULE_FULL: "*/5 * * * * *", KDR_SCHEDULE_INCREMENTAL: "*/5 * * * * *" });
    const deadline = Date.now() + 60_000;
    let n = 0;
    while (Date.now() < deadline && n < 6) {
      await new Promise((r) => setTimeout(r, 1000));
      n = (await w.db.query("SELECT count(*)::int AS n FROM backup_management WHERE service_name = $1 AND backup_status = 'completed'", [service])).rows[0].n;
    }
    serve.kill("SIGTERM");
    await new Promise((r) => serve.once("close", r));
    const out = serve.output();
    expect(n, out).toBeGreaterThanOrEqual(6);
    expect(initLines(out), out).toHaveLength(1);
    const runs = (await w.db.query("SELECT backup_type, backup_status, started_at, coalesce(completed_at, failed_at) AS ended_at FROM backup_management WHERE service_name = $1 ORDER BY started_at", [service])).rows;
    // Both jobs ran, and never at once: each run starts after the one before it ended.
    expect(new Set(runs.map((r) => r.backup_type))).toEqual(new Set(["full", "incremental"]));
    for (let i = 1; i < runs.length; i++) expect(runs[i].started_at.getTime(), JSON.stringify(runs)).toBeGreaterThanOrEqual(runs[i - 1].ended_at.getTime());
    // A run stopped by the SIGTERM is the only one allowed to fail.
    expect(runs.slice(0, -1).every((r) => r.backup_status === "completed"), JSON.stringify(runs)).toBe(true);
    expect(await repoRows(service)).toMatchObject([{ generation: 1, status: "active" }]);
  }, 120_000);

  it("an init interrupted after its key was written: the next run starts generation 2, with a full, and says why", async () => {
    const service = "interrupted";
    const { env } = await volumeService(service);
    // What a killed `restic init` leaves: its key, no config (restic writes the key first).
    resticAt(`restic/${service}/g1/`, ["init"]);
    await w.bucket.client.send(new DeleteObjectCommand({ Bucket: w.bucket.bucket, Key: `restic/${service}/g1/config` }));
    const r = await backup(env, "incremental");
    expect(r.code, r.stderr).toBe(0);
    expect(r.summary!.type).toBe("full");
    expect(r.summary!.location).toMatch(new RegExp(`/restic/${service}/g2/$`));
    expect(r.stderr).toMatch(/ALERT restic repository generation 1 of interrupted is unusable and will never be written again: restic repository restic\/interrupted\/g1\/ has no kdr-repository\.json: its init never finished/);
    expect(r.stderr).toMatch(/the first snapshot of generation 2 is taken as a full/);
    expect(await repoRows(service)).toMatchObject([
      { generation: 1, status: "failed", failure: expect.stringMatching(/init never finished/) },
      { generation: 2, status: "active" },
    ]);
    // The orphan key was never touched, and nothing was initialised over it.
    expect(await keys(`restic/${service}/g1/keys/`)).toHaveLength(1);
    const next = await backup(env, "incremental");
    expect(next.code, next.stderr).toBe(0);
    expect(next.summary!.type).toBe("incremental");
    expect(initLines(next.stderr)).toHaveLength(0);
  }, 120_000);

  it("an orphan key in the generation in use is ignored; an older generation still restores after a newer one took over", async () => {
    const service = "orphan";
    const { env, restoreEnv, vol } = await volumeService(service);
    const first = await backup(env);
    expect(first.code, first.stderr).toBe(0);
    // A second key with the same password but another master key, sorted before the real one
    // (restic 0.14 without a hint tries keys in listing order: this is what broke CI).
    resticAt(`scratch/${service}/`, ["init"]);
    const [foreign] = await keys(`scratch/${service}/keys/`);
    const orphanId = "0".repeat(8) + foreign!.split("/").pop()!.slice(8);
    await copy(foreign!, `restic/${service}/g1/keys/${orphanId}`);
    expect(() => resticAt(`restic/${service}/g1/`, ["cat", "config"], env.KDR_SECRET_DIR)).toThrow(/ciphertext verification failed/);
    const second = await backup(env, "incremental");
    expect(second.code, second.stderr).toBe(0);
    expect(second.summary!.location).toMatch(/\/g1\/$/);
    // Storage alone is enough to open it: restore finds the key in the descriptor, or tries each.
    const t1 = path.join(w.root, "restore-orphan");
    const res = await w.run(["restore", "--backup-id", first.summary!.backupId, "--target", t1], restoreEnv);
    expect(res.code, res.stderr).toBe(0);
    expect(readFileSync(path.join(t1, "d", "f0.bin"))).toEqual(readFileSync(path.join(vol, "d", "f0.bin")));
    // Generation 1 is given up (as the agent does when it cannot open it); the next run goes to
    // generation 2, and generation 1's snapshots still restore because it still opens.
    await w.db.query("UPDATE restic_repository SET status = 'failed', failed_at = now(), failure = 'given up by the test' WHERE service_name = $1", [service]);
    const third = await backup(env, "incremental");
    expect(third.code, third.stderr).toBe(0);
    expect(third.summary!.location).toMatch(/\/g2\/$/);
    const t2 = path.join(w.root, "restore-orphan-g1");
    const old = await w.run(["restore", "--backup-id", second.summary!.backupId, "--target", t2], restoreEnv);
    expect(old.code, old.stderr).toBe(0);
    expect(old.stderr).toMatch(/from restic\/orphan\/g1\//);
    // verify reads with the same read-only keys (restic check takes no lock it could not write).
    const v = await w.run(["verify", "--backup-id", second.summary!.backupId, "--json"], restoreEnv);
    expect(v.code, v.stderr).toBe(0);
    expect(JSON.parse(v.stdout).checks.join("\n")).toMatch(/restic check --read-data of restic\/orphan\/g1\/: no errors were found/);
  }, 180_000);

  it("a damaged repository: the next scheduled run marks it failed, starts a new generation and backs up; catalog and status show both", async () => {
    const service = "damaged";
    const { env, restoreEnv } = await volumeService(service);
    const first = await backup(env);
    expect(first.code, first.stderr).toBe(0);
    // Plant the damage CI saw: a config no key of the repository decrypts.
    resticAt(`scratch/${service}/`, ["init"]);
    await copy(`scratch/${service}/config`, `restic/${service}/g1/config`);
    const port = await freePort();
    const serve = w.start(["serve"], { ...env, KDR_METRICS_PORT: String(port), KDR_SCHEDULE_INCREMENTAL: "*/3 * * * * *" });
    let rows: Awaited<ReturnType<typeof repoRows>> = [];
    let completedInG2 = 0;
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && completedInG2 < 2) {
      await new Promise((r) => setTimeout(r, 1000));
      rows = await repoRows(service);
      completedInG2 = (await w.db.query("SELECT count(*)::int AS n FROM backup_management WHERE service_name = $1 AND backup_status = 'completed' AND storage_prefix LIKE '%/g2/'", [service])).rows[0].n;
    }
    const metrics = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
    serve.kill("SIGTERM");
    await new Promise((r) => serve.once("close", r));
    expect(completedInG2, serve.output()).toBeGreaterThanOrEqual(2);
    expect(rows).toMatchObject([
      { generation: 1, status: "failed", failure: expect.stringMatching(/opens with none of its 1 key\(s\).*ciphertext verification failed/) },
      { generation: 2, status: "active" },
    ]);
    expect(metrics).toMatch(/kdr_restic_repository_failures_total\{service="damaged"\} 1/);
    expect(metrics).toMatch(/kdr_restic_repository_generation\{service="damaged"\} 2/);
    // No run failed for it: the damage was found, reported, and the same run went on in generation 2.
    const failed = (await w.db.query("SELECT count(*)::int AS n FROM backup_management WHERE service_name = $1 AND backup_status = 'failed'", [service])).rows[0].n;
    expect(failed, serve.output()).toBeLessThanOrEqual(1); // the run the SIGTERM interrupted, if any
    const report = await statusReport(w.db, { tenantId: w.tenantId });
    const text = formatStatus(report);
    expect(text).toMatch(/damaged: restic repository generation 1 FAILED at \S+: restic repository restic\/damaged\/g1\/ opens with none/);
    expect(text).toMatch(/damaged: restic repository generation 2 in use since/);
    const st = report.tenants[0]!.services.find((s) => s.service === service)!;
    expect(st.repositories.map((r) => r.status)).toEqual(["failed", "active"]);
    // The old snapshot cannot be read any more, and restore says so plainly.
    const res = await w.run(["restore", "--backup-id", first.summary!.backupId, "--target", path.join(w.root, "restore-damaged")], restoreEnv);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/restic repository restic\/damaged\/g1\/ opens with none of its 1 key\(s\)/);
  }, 120_000);

  it("a repository of another service at our prefix is refused with the fix, and nothing is written", async () => {
    const service = "mine";
    const { env } = await volumeService(service);
    const descriptor = { format: "kdr-restic-repository/1", tenantId: w.tenantId, service: "theirs", generation: 1, repositoryId: "a".repeat(64), keyId: "b".repeat(64), createdAt: new Date().toISOString() };
    await w.bucket.client.send(new PutObjectCommand({ Bucket: w.bucket.bucket, Key: `restic/${service}/g1/kdr-repository.json`, Body: JSON.stringify(descriptor) }));
    const r = await backup(env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/restic\/mine\/g1\/ holds the restic repository of service 'theirs' .*not of 'mine' .*check KDR_SERVICE, KDR_TENANT_ID and KDR_S3_BUCKET\. Nothing was written\./);
    expect(await keys(`restic/${service}/`)).toEqual([`restic/${service}/g1/kdr-repository.json`]);
    expect(await repoRows(service)).toEqual([]);
  }, 60_000);
});
