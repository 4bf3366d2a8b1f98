/**
 * Faults around the agent (issue #16), against a real PostgreSQL 15 primary, a real catalog
 * server and the local RGW, each case ending with what the catalog says and what verify finds:
 * - the catalog stopped while a backup uploads; the agent SIGKILLed before its upload, and after
 *   its manifest is stored but before the catalog heard (its catalog connection held by a proxy);
 * - the catalog restarting under a serving sidecar;
 * - the S3 endpoint gone for seconds during an upload, and gone for good (a proxy the test cuts);
 * - the protected PostgreSQL down when its sidecar starts, restarted during a base backup, and
 *   restarted under a streaming sidecar;
 * - a WAL segment missing in the middle of the chain, a base whose object is gone, a base whose
 *   manifest alone is gone: restore falls back to the newest good point and says so.
 */
import { CopyObjectCommand, DeleteObjectCommand, ListMultipartUploadsCommand, ListObjectVersionsCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy, type CuttableProxy } from "../support/proxy.js";
import { agentWorld, pgQuery, prepareBackupRole, startRestored, type AgentResult, type AgentWorld } from "../support/s3.js";
import { freePort, startTmpPostgres, type TmpPostgres } from "../support/tmp-postgres.js";

let w: AgentWorld;
let primary: TmpPostgres;
let env: Record<string, string>;
const SERVICE = "pg-faults";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

interface Summary {
  backupId: string;
  details: Record<string, unknown>;
  reconciled: string[];
  completedFromManifests: string[];
  staleUploadsAborted: string[];
}

function json<T>(r: AgentResult): T {
  if (r.code !== 0) throw new Error(`agent exited ${r.code}\n${r.stderr}\n${r.stdout}`);
  return JSON.parse(r.stdout) as T;
}

/** The catalog, through a connection of its own (the test's long-lived one dies with a catalog stop). */
const catalog = <T extends Record<string, unknown>>(sql: string, params: unknown[] = []) => pgQuery<T>(w.catalog.urlFor("kryonix_dr"), sql, params);

async function runningBackup(): Promise<string> {
  for (let i = 0; i < 150; i++) {
    const [r] = await catalog<{ backup_id: string }>("SELECT backup_id FROM backup_management WHERE backup_status = 'running' AND service_name = $1", [SERVICE]);
    if (r) return r.backup_id;
    await sleep(200);
  }
  throw new Error("no backup of pg-faults started running within 30 s");
}

/** Each started agent's end (stdio flushed), promised from its start so no 'close' is missed. */
const closes = new WeakMap<ChildProcess, Promise<number | null>>();
function start(args: string[], runEnv: Record<string, string>): ReturnType<AgentWorld["start"]> {
  const p = w.start(args, runEnv);
  closes.set(p, new Promise((resolve) => p.once("close", (code) => resolve(code))));
  return p;
}

function exited(p: ChildProcess, timeoutMs = 180_000): Promise<number | null> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    closes.get(p)!,
    new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`the agent did not exit within ${timeoutMs / 1000} s`)), timeoutMs))),
  ]).finally(() => clearTimeout(t));
}

/** Waits until the run's first part is in the bucket: from then on, parts go up while it runs. */
async function uploading(id: string): Promise<void> {
  for (let i = 0; i < 150; i++) {
    const res = await w.bucket.client.send(new ListMultipartUploadsCommand({ Bucket: w.bucket.bucket, Prefix: `full/${SERVICE}/${id}/` }));
    if ((res.Uploads ?? []).length) return;
    await sleep(200);
  }
  throw new Error(`backup ${id} began no upload within 30 s`);
}

async function keysOf(id: string): Promise<string[]> {
  const res = await w.bucket.client.send(new ListObjectsV2Command({ Bucket: w.bucket.bucket, Prefix: `full/${SERVICE}/${id}/` }));
  return (res.Contents ?? []).map((o) => o.Key!);
}

/** uid:gid of the postgres user, for a restored data directory a local server runs from. */
const owner = () => {
  const id = (flag: string) => spawnSync("id", [flag, "postgres"], { encoding: "utf8" }).stdout.trim();
  return `${id("-u")}:${id("-g")}`;
};

/** The labels of `table` in a server started on a restored data directory. */
async function restoredLabels(target: string, table: string): Promise<string[]> {
  const srv = await startRestored(target, primary.password);
  try {
    return (await pgQuery<{ label: string }>(srv.url("app"), `SELECT label FROM ${table} ORDER BY id`)).map((r) => r.label);
  } finally {
    srv.stop();
  }
}

/** Inserts a row labelled so into `table`, and waits until the catalog's WAL covers its moment. */
async function archivedIn(table: string, label: string, sidecar: ReturnType<typeof start>, seconds = 60): Promise<void> {
  const [{ at }] = await pgQuery<{ at: Date }>(primary.urlFor("app"), `INSERT INTO ${table} (label) VALUES ($1) RETURNING clock_timestamp() AS at`, [label]);
  for (let i = 0; i < seconds * 2; i++) {
    const [r] = await catalog<{ upto: Date | null }>("SELECT max(covers_until) AS upto FROM wal_segment WHERE service_name = $1", [SERVICE]);
    if (r?.upto && r.upto >= at) return;
    await sleep(500);
  }
  throw new Error(`the WAL of '${label}' (${at.toISOString()}) was not archived within ${seconds} s:\n${sidecar.output().slice(-3000)}`);
}

beforeAll(async () => {
  w = await agentWorld("kdrtest-agent-faults");
  // The test's own catalog connection must not crash the test process when the catalog stops.
  w.db.on("error", () => undefined);
  primary = await startTmpPostgres();
  const targetEnv = await prepareBackupRole(primary, w.secretDir);
  // About 40 MB that does not compress: the base goes up in several 8 MiB parts, one every few
  // seconds at the rate below, so an outage of the S3 endpoint falls between parts.
  await pgQuery(primary.urlFor("app"), "CREATE TABLE blobs (id int PRIMARY KEY, b bytea NOT NULL)");
  await pgQuery(primary.urlFor("app"), "INSERT INTO blobs SELECT g, decode(string_agg(md5(random()::text || g || k), ''), 'hex') FROM generate_series(1, 40000) g, generate_series(1, 64) k GROUP BY g");
  env = w.env(SERVICE, targetEnv);
}, 180_000);

afterAll(async () => {
  await primary?.stop().catch(() => undefined);
  await w?.close();
});

describe("agent faults", () => {
  it("the catalog stopped while a backup uploads: the backup and its manifest are stored, the run says so; the next run completes it from its manifest, and it verifies", async () => {
    const run = start(["backup", "--type", "full", "--no-logical"], { ...env, KDR_PG_MAX_RATE: "4M" });
    const id = await runningBackup();
    await w.catalog.down();
    let code: number | null;
    try {
      code = await exited(run);
    } finally {
      await w.catalog.up();
    }
    expect(code, run.output()).toBe(1);
    expect(run.output()).toContain(`backup ${id} of ${SERVICE} is stored, its manifest too (s3://${w.bucket.bucket}/full/${SERVICE}/${id}/manifest.json), but the catalog could not record it`);
    expect(run.output()).toMatch(/the next run of pg-faults completes it from its manifest once the catalog answers/);
    expect(await keysOf(id)).toContain(`full/${SERVICE}/${id}/manifest.json`);
    const [left] = await catalog<{ backup_status: string }>("SELECT backup_status FROM backup_management WHERE backup_id = $1", [id]);
    expect(left!.backup_status).toBe("running");

    // A run that cannot reach the store cannot look for that manifest: it reconciles nothing (the
    // run is not known to have failed) and stops before writing a row of its own.
    const blind = await w.run(["backup", "--type", "full", "--no-logical"], { ...env, KDR_S3_ENDPOINT: "http://127.0.0.1:1", KDR_S3_RETRY_SECONDS: "1" }, { timeoutMs: 180_000 });
    expect(blind.code, blind.stderr).toBe(1);
    expect(blind.stderr).toMatch(new RegExp(`the object store could not be reached while looking for the manifest of run ${id} of ${SERVICE}, left in flight \\(full/${SERVICE}/${id}/manifest\\.json\\): no run was reconciled, and this one stops`));
    const [still] = await catalog<{ backup_status: string; n: string }>(
      "SELECT (SELECT backup_status FROM backup_management WHERE backup_id = $1) AS backup_status, (SELECT count(*) FROM backup_management WHERE service_name = $2 AND created_at > now() - interval '1 minute' AND backup_id <> $1) AS n",
      [id, SERVICE],
    );
    expect(still).toEqual({ backup_status: "running", n: "0" });

    const next = json<Summary>(await w.run(["backup", "--type", "full", "--no-logical", "--json"], env, { timeoutMs: 180_000 }));
    expect(next.completedFromManifests).toEqual([id]);
    expect(next.reconciled).toEqual([]);
    const [row] = await catalog<{ backup_status: string; recovery_point_end: Date | null; end_lsn: string | null; how: { was: string } | null; artifacts: number }>(
      `SELECT backup_status, recovery_point_end, end_lsn, metadata->'completedFromManifest' AS how,
              (SELECT count(*)::int FROM backup_artifact a WHERE a.backup_id = b.backup_id) AS artifacts
         FROM backup_management b WHERE backup_id = $1`,
      [id],
    );
    expect(row).toMatchObject({ backup_status: "completed", how: { was: "running" } });
    expect(row!.recovery_point_end).not.toBeNull();
    expect(row!.end_lsn).not.toBeNull();
    expect(row!.artifacts).toBeGreaterThanOrEqual(2); // the base and the manifest
    const v = await w.run(["verify", "--backup-id", id], env, { timeoutMs: 180_000 });
    expect(v.code, v.stdout + v.stderr).toBe(0);
    expect(v.stdout).toMatch(new RegExp(`verify ${id}: PASSED`));
  }, 420_000);

  describe("the agent SIGKILLed", () => {
    let catalogProxy: CuttableProxy;
    beforeAll(async () => {
      catalogProxy = await startProxy(`tcp://${w.catalog.host}:${w.catalog.port}`);
    });
    afterAll(async () => {
      await catalogProxy?.close();
    });

    it("before its upload: nothing of it is stored; the next run reconciles its row to failed and succeeds", async () => {
      // At 1 MiB/s the first 8 MiB part is seconds away when the row turns running.
      const run = start(["backup", "--type", "full", "--no-logical"], { ...env, KDR_PG_MAX_RATE: "1M" });
      const id = await runningBackup();
      run.kill("SIGKILL");
      await exited(run);
      const uploads = await w.bucket.client.send(new ListMultipartUploadsCommand({ Bucket: w.bucket.bucket, Prefix: `full/${SERVICE}/${id}/` }));
      expect(uploads.Uploads ?? [], "no upload begun").toEqual([]);
      expect(await keysOf(id)).toEqual([]);
      const next = json<Summary>(await w.run(["backup", "--type", "full", "--no-logical", "--json"], env, { timeoutMs: 180_000 }));
      expect(next.reconciled).toEqual([id]);
      expect(next.completedFromManifests).toEqual([]);
      const [row] = await catalog<{ backup_status: string; error_message: string }>("SELECT backup_status, error_message FROM backup_management WHERE backup_id = $1", [id]);
      expect(row!.backup_status).toBe("failed");
      expect(row!.error_message).toMatch(/^reconciled by .*: the agent running it \(host .*\) stopped reporting; last sign of life /);
    }, 300_000);

    /** A full backup SIGKILLed after its manifest is stored, before the catalog heard of its end. */
    async function killedAfterManifest(): Promise<string> {
      const run = start(["backup", "--type", "full", "--no-logical"], { ...env, KDR_CATALOG_HOST: "127.0.0.1", KDR_CATALOG_PORT: String(catalogProxy.port), KDR_PG_MAX_RATE: "4M" });
      const id = await runningBackup();
      await uploading(id);
      catalogProxy.hold();
      try {
        const manifest = `full/${SERVICE}/${id}/manifest.json`;
        for (let i = 0; i < 600 && !(await keysOf(id)).includes(manifest); i++) await sleep(100);
        expect(await keysOf(id), "the manifest stored").toContain(manifest);
        await sleep(500); // the run now waits for its catalog write, which the proxy holds
        run.kill("SIGKILL");
        await exited(run);
      } finally {
        catalogProxy.release(); // the killed run's held write is dropped with its connection
      }
      const [left] = await catalog<{ backup_status: string }>("SELECT backup_status FROM backup_management WHERE backup_id = $1", [id]);
      expect(left!.backup_status, "the catalog never heard the end").toBe("running");
      return id;
    }

    it("after its manifest is stored, before the catalog heard (its catalog connection held): no restore uses it; the next run completes it from its manifest, and it verifies", async () => {
      const id = await killedAfterManifest();
      const r = await w.run(["restore", "--target", path.join(w.root, "restore-while-in-flight"), "--owner", owner()], env, { timeoutMs: 300_000 });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout + r.stderr).toMatch(/restore pg-faults: using backup [0-9a-f-]{36} /);
      expect(r.stdout + r.stderr, "a run the catalog has not completed is never restored").not.toContain(`using backup ${id}`);

      const next = json<Summary>(await w.run(["backup", "--type", "full", "--no-logical", "--json"], env, { timeoutMs: 180_000 }));
      expect(next.completedFromManifests).toEqual([id]);
      expect(next.reconciled).toEqual([]);
      const v = await w.run(["verify", "--backup-id", id], env, { timeoutMs: 180_000 });
      expect(v.code, v.stdout + v.stderr).toBe(0);
      expect(v.stdout).toMatch(new RegExp(`verify ${id}: PASSED`));
    }, 420_000);

    it("reconciled to failed before its manifest reached this bucket (a region coming back): the first run after the manifest arrives completes it, and it verifies", async () => {
      const id = await killedAfterManifest();
      // The bucket as the recovered region's was: the manifest not copied in yet (a delete marker
      // hides it; its version stays, locked).
      const key = `full/${SERVICE}/${id}/manifest.json`;
      const versions = await w.bucket.client.send(new ListObjectVersionsCommand({ Bucket: w.bucket.bucket, Prefix: key }));
      const original = versions.Versions!.find((v) => v.Key === key && v.IsLatest)!.VersionId!;
      await w.bucket.client.send(new DeleteObjectCommand({ Bucket: w.bucket.bucket, Key: key }));
      const first = json<Summary>(await w.run(["backup", "--type", "full", "--no-logical", "--json"], env, { timeoutMs: 180_000 }));
      expect(first.reconciled).toEqual([id]);
      expect(first.completedFromManifests).toEqual([]);
      // The manifest arrives (as the replicator copies it: a new version of the key).
      await w.bucket.client.send(new CopyObjectCommand({ Bucket: w.bucket.bucket, Key: key, CopySource: `${w.bucket.bucket}/${key}?versionId=${encodeURIComponent(original)}` }));
      const after = await w.run(["backup", "--type", "full", "--no-logical", "--json"], env, { timeoutMs: 180_000 });
      expect(json<Summary>(after).completedFromManifests).toEqual([id]);
      expect(after.stdout + after.stderr).toMatch(new RegExp(`backup ${id} of ${SERVICE} was reconciled to failed \\(reconciled by .*\\) in the catalog, but its manifest ${esc(key)} is stored: completed from it`));
      const [row] = await catalog<{ backup_status: string; failed_at: Date | null; error_message: string | null; how: { was: string }; reconciled_as: string; manifest_version: string }>(
        `SELECT backup_status, failed_at, error_message, metadata->'completedFromManifest' AS how, metadata->>'reconciledAs' AS reconciled_as,
                (SELECT version_id FROM backup_artifact a WHERE a.backup_id = b.backup_id AND a.object_key = $2) AS manifest_version
           FROM backup_management b WHERE backup_id = $1`,
        [id, key],
      );
      expect(row).toMatchObject({ backup_status: "completed", failed_at: null, error_message: null, how: { was: "failed" } });
      expect(row!.reconciled_as).toMatch(/^reconciled by /);
      expect(row!.manifest_version, "the copy's version, the one in this bucket").not.toBe(original);
      const v = await w.run(["verify", "--backup-id", id], env, { timeoutMs: 180_000 });
      expect(v.code, v.stdout + v.stderr).toBe(0);
      expect(v.stdout).toMatch(new RegExp(`verify ${id}: PASSED`));
    }, 420_000);
  });

  it("a serving sidecar whose catalog restarts exits with 75, saying why, and the next one serves", async () => {
    const serveEnv = { ...env, KDR_METRICS_PORT: String(await freePort()) };
    const ready = /\/healthz and \/metrics on/;
    const first = start(["serve"], serveEnv);
    for (let i = 0; i < 300 && !ready.test(first.output()); i++) await sleep(200);
    expect(first.output()).toMatch(ready);
    await w.catalog.down();
    let code: number | null;
    try {
      code = await exited(first, 60_000);
    } finally {
      await w.catalog.up();
    }
    expect(code, first.output()).toBe(75);
    expect(first.output()).toMatch(/serve pg-faults: lost its catalog connection \(.+\); exiting so that Swarm starts the sidecar again with a new one/);
    const second = start(["serve"], serveEnv);
    for (let i = 0; i < 300 && !ready.test(second.output()); i++) await sleep(200);
    expect(second.output()).toMatch(ready);
    second.kill("SIGTERM");
    expect(await exited(second, 60_000), second.output()).toBe(0);
  }, 240_000);

  it("a sidecar that starts before its PostgreSQL waits for it, saying so once, then serves; a login it is refused still stops it at once", async () => {
    const serveEnv = { ...env, KDR_METRICS_PORT: String(await freePort()) };
    const ready = /\/healthz and \/metrics on/;
    await primary.down();
    const sidecar = start(["serve"], serveEnv);
    try {
      const waiting = /serve pg-faults: PostgreSQL at \S+ does not answer yet \(ECONNREFUSED\); waiting up to 180 s for it/;
      for (let i = 0; i < 150 && !waiting.test(sidecar.output()); i++) await sleep(200);
      expect(sidecar.output()).toMatch(waiting);
      await sleep(7000); // two more attempts, not said again
      expect(sidecar.output().match(/does not answer yet/g)).toHaveLength(1);
      expect(sidecar.exitCode).toBeNull();
    } finally {
      await primary.up();
    }
    for (let i = 0; i < 300 && !ready.test(sidecar.output()); i++) await sleep(200);
    expect(sidecar.output()).toMatch(/serve pg-faults: PostgreSQL answers now/);
    expect(sidecar.output()).toMatch(ready);
    sidecar.kill("SIGTERM");
    expect(await exited(sidecar, 60_000), sidecar.output()).toBe(0);
    const refused = start(["serve"], { ...serveEnv, KDR_TARGET_USER: "no_such_role" });
    expect(await exited(refused, 30_000), refused.output()).toBe(2);
    expect(refused.output()).toMatch(/cannot connect to PostgreSQL no_such_role@.*(role "no_such_role" does not exist|password authentication failed)/);
    expect(refused.output()).not.toMatch(/does not answer yet/);
  }, 240_000);

  it("the protected PostgreSQL restarted under a streaming sidecar: the receiver is started again, and the WAL from before and after the restart restores", async () => {
    await pgQuery(primary.urlFor("app"), "CREATE TABLE streamed (id serial PRIMARY KEY, label text NOT NULL)");
    json<Summary>(await w.run(["backup", "--type", "full", "--no-logical", "--json"], env, { timeoutMs: 180_000 }));
    const sidecar = start(["serve"], { ...env, KDR_METRICS_PORT: String(await freePort()), KDR_WAL_SWITCH_SECONDS: "2" });
    const archived = (label: string) => archivedIn("streamed", label, sidecar);
    try {
      for (let i = 0; i < 150 && !/streaming WAL/.test(sidecar.output()); i++) await sleep(200);
      await archived("before the restart");
      await primary.down();
      await sleep(3000); // the receiver notices, and its restarts fail while the server is away
      await primary.up();
      await archived("after the restart");
      expect(sidecar.exitCode, sidecar.output()).toBeNull();
      // Said when it stopped and when it streamed again (after 10 s of streaming); not once per 2-second attempt.
      for (let i = 0; i < 60 && !/pg_receivewal stopped, started again every 2 s: working again after/.test(sidecar.output()); i++) await sleep(500);
      const said = sidecar.output().split("\n").filter((l) => l.includes("pg_receivewal stopped, started again every 2 s"));
      expect(said[0], sidecar.output()).toMatch(/^wal pg-faults: pg_receivewal stopped, started again every 2 s: .+/);
      expect(said.at(-1)).toMatch(/^wal pg-faults: pg_receivewal stopped, started again every 2 s: working again after \d+\.\d s \(\d+ failed attempt\(s\)\)$/);
      expect(said.length).toBe(2);
    } finally {
      sidecar.kill("SIGTERM");
    }
    expect(await exited(sidecar, 60_000), sidecar.output()).toBe(0);
    const target = path.join(w.root, "restore-after-pg-restart");
    const r = await w.run(["restore", "--target", target, "--owner", owner()], env, { timeoutMs: 300_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/FELL BACK/);
    expect(await restoredLabels(target, "streamed")).toEqual(["before the restart", "after the restart"]);
  }, 300_000);

  describe("the S3 endpoint", () => {
    let proxy: CuttableProxy;
    beforeAll(async () => {
      proxy = await startProxy(w.bucket.endpoint);
    });
    afterAll(async () => {
      await proxy?.close();
    });

    it("gone for 8 s during an upload: each retry is said, the backup completes and verifies", async () => {
      const run = start(["backup", "--type", "full", "--no-logical", "--json"], { ...env, KDR_S3_ENDPOINT: proxy.url, KDR_PG_MAX_RATE: "2M" });
      const id = await runningBackup();
      await uploading(id);
      await proxy.cut();
      await sleep(8000);
      await proxy.restore();
      const code = await exited(run);
      expect(code, run.output()).toBe(0);
      expect(run.output()).toMatch(new RegExp(`storage: ${esc(proxy.url)} failed \\((ECONNRESET|ECONNREFUSED)[^)]*\\); retry 1/6 after 0\\.5 s`));
      const [row] = await catalog<{ backup_status: string }>("SELECT backup_status FROM backup_management WHERE backup_id = $1", [id]);
      expect(row!.backup_status).toBe("completed");
      const v = await w.run(["verify", "--backup-id", id], env, { timeoutMs: 180_000 });
      expect(v.code, v.stdout + v.stderr).toBe(0);
      expect(v.stdout).toMatch(new RegExp(`verify ${id}: PASSED`));
    }, 300_000);

    it("gone for long under a streaming sidecar: its WAL spool fills the disk, which is said once; when the store is back the spool drains, streaming resumes, and every write restores", async () => {
      // A 40 MiB state volume holds two 16 MiB segments: the third finds it full. The catch-up at the
      // start (the WAL the slot kept since the last sidecar) may fill it already: the receiver must
      // then get through it with the store up (a restarted receiver once streamed the same segments
      // into the full disk forever).
      const state = path.join(w.root, "small-state");
      mkdirSync(state);
      const mount = (...args: string[]) => {
        const m = spawnSync("mount", args, { encoding: "utf8" });
        expect(m.status, m.stderr).toBe(0);
      };
      mount("-t", "tmpfs", "-o", "size=40m", "tmpfs", state);
      await pgQuery(primary.urlFor("app"), "CREATE TABLE spooled (id serial PRIMARY KEY, label text NOT NULL)");
      json<Summary>(await w.run(["backup", "--type", "full", "--no-logical", "--json"], env, { timeoutMs: 180_000 }));
      const sidecar = start(["serve"], { ...env, KDR_STATE_DIR: state, KDR_S3_ENDPOINT: proxy.url, KDR_METRICS_PORT: String(await freePort()), KDR_WAL_SWITCH_SECONDS: "2" });
      const labels = ["before the outage"];
      try {
        for (let i = 0; i < 150 && !/streaming WAL/.test(sidecar.output()); i++) await sleep(200);
        await archivedIn("spooled", labels[0]!, sidecar, 120);
        if (/is full/.test(sidecar.output())) {
          const back = /pg_receivewal stopped, started again every 2 s: working again after/;
          for (let i = 0; i < 120 && !back.test(sidecar.output()); i++) await sleep(500);
          expect(sidecar.output(), "the receiver streams again after the catch-up filled the disk").toMatch(back);
        }
        const from = sidecar.output().length;
        const outage = () => sidecar.output().slice(from);
        await proxy.cut();
        const full = /WAL spool .* is full/;
        for (let i = 0; i < 240 && !full.test(outage()); i++) {
          labels.push(`during the outage ${i}`);
          await pgQuery(primary.urlFor("app"), "INSERT INTO spooled (label) VALUES ($1)", [labels.at(-1)]);
          await sleep(500);
        }
        expect(outage(), "the full spool is said").toMatch(/^wal pg-faults: pg_receivewal stopped, started again every 2 s: the WAL spool \S+ is full \(\d+ segment\(s\), \d+ MiB, waiting for upload\): the local disk is full: free space in the agent's state directory \(\S+\), or give its volume more room\. The receiver starts again as uploads free space; the primary keeps the WAL in slot kdr_pg_faults meanwhile, so watch its disk\./m);
        // Writes go on with the spool full and the store away, until the uploads have used up their
        // retries (about 25 s) and for 10 s more: each thing is said once.
        const failing = /^wal pg-faults: WAL uploads failing, tried again until they work: /m;
        for (let i = 0; i < 200 && !failing.test(outage()); i++) {
          labels.push(`spool full ${i}`);
          await pgQuery(primary.urlFor("app"), "INSERT INTO spooled (label) VALUES ($1)", [labels.at(-1)]);
          await sleep(500);
        }
        for (let i = 0; i < 20; i++) {
          labels.push(`spool full, uploads failing ${i}`);
          await pgQuery(primary.urlFor("app"), "INSERT INTO spooled (label) VALUES ($1)", [labels.at(-1)]);
          await sleep(500);
        }
        const said = (re: RegExp) => outage().split("\n").filter((l) => re.test(l)).length;
        expect(said(/is full/), outage()).toBe(1);
        expect(said(/^wal pg-faults: WAL uploads failing, tried again until they work: /), outage()).toBe(1);
        expect(said(/^wal pg-faults: removed \S+\.partial/), outage()).toBeLessThanOrEqual(1);
        expect(said(/^storage: .* retry \d\/6/), outage()).toBeLessThanOrEqual(6);
        await proxy.restore();
        labels.push("after the outage");
        await archivedIn("spooled", labels.at(-1)!, sidecar, 180);
        expect(sidecar.exitCode, sidecar.output()).toBeNull();
        expect(said(/^wal pg-faults: WAL uploads failing, tried again until they work: working again after /), outage()).toBe(1);
      } catch (e) {
        // Which server refused, if one did: the primary's log and the sidecar's own.
        const tail = (f: string) => (existsSync(f) ? readFileSync(f, "utf8").slice(-3000) : "(no log)");
        throw new Error(`${(e as Error).message}\n--- primary's log:\n${tail(primary.logFile)}\n--- catalog's log:\n${tail(w.catalog.logFile)}\n--- sidecar:\n${sidecar.output().slice(-3000)}`, { cause: e });
      } finally {
        await proxy.restore();
        sidecar.kill("SIGTERM");
        await exited(sidecar, 60_000).finally(() => spawnSync("umount", ["-l", state]));
      }
      expect(sidecar.exitCode, sidecar.output()).toBe(0);
      const target = path.join(w.root, "restore-after-spool-full");
      const r = await w.run(["restore", "--target", target, "--owner", owner()], env, { timeoutMs: 300_000 });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).not.toMatch(/FELL BACK/);
      expect(await restoredLabels(target, "spooled")).toEqual(labels);
    }, 600_000);

    it("gone for good during an upload: the run fails after its retries, the catalog says why, no manifest; the next run aborts the upload it left and succeeds", async () => {
      const run = start(["backup", "--type", "full", "--no-logical"], { ...env, KDR_S3_ENDPOINT: proxy.url, KDR_PG_MAX_RATE: "2M" });
      const id = await runningBackup();
      await uploading(id);
      await proxy.cut();
      let code: number | null;
      try {
        code = await exited(run);
      } finally {
        await proxy.restore();
      }
      expect(code, run.output()).toBe(1);
      expect(run.output()).toMatch(/retry 6\/6/);
      const [row] = await catalog<{ backup_status: string; error_message: string }>("SELECT backup_status, error_message FROM backup_management WHERE backup_id = $1", [id]);
      expect(row!.backup_status).toBe("failed");
      expect(row!.error_message, run.output()).toMatch(new RegExp(`^upload of s3://${w.bucket.bucket}/full/${SERVICE}/${id}/\\S+ to ${esc(proxy.url)} failed: .*ECONNREFUSED`));
      expect(await keysOf(id)).not.toContain(`full/${SERVICE}/${id}/manifest.json`);

      const next = json<Summary>(await w.run(["backup", "--type", "full", "--no-logical", "--json"], env, { timeoutMs: 180_000 }));
      expect(next.staleUploadsAborted.some((k) => k.startsWith(`full/${SERVICE}/${id}/`))).toBe(true);
      const left = await w.bucket.client.send(new ListMultipartUploadsCommand({ Bucket: w.bucket.bucket, Prefix: `full/${SERVICE}/` }));
      expect(left.Uploads ?? []).toEqual([]);
    }, 300_000);
  });

  it("the protected PostgreSQL restarted during a base backup: the run fails, naming pg_basebackup's error; nothing of it is restorable, and the next run succeeds", async () => {
    const run = start(["backup", "--type", "full", "--no-logical"], { ...env, KDR_PG_MAX_RATE: "2M" });
    const id = await runningBackup();
    await uploading(id);
    await primary.down();
    await primary.up();
    const code = await exited(run);
    expect(code, run.output()).toBe(1);
    const [row] = await catalog<{ backup_status: string; error_message: string }>("SELECT backup_status, error_message FROM backup_management WHERE backup_id = $1", [id]);
    expect(row!.backup_status).toBe("failed");
    expect(row!.error_message).toMatch(/pg_basebackup/);
    expect(await keysOf(id)).not.toContain(`full/${SERVICE}/${id}/manifest.json`);
    const next = json<Summary>(await w.run(["backup", "--type", "full", "--no-logical", "--json"], env, { timeoutMs: 180_000 }));
    const v = await w.run(["verify", "--backup-id", next.backupId], env, { timeoutMs: 180_000 });
    expect(v.code, v.stdout + v.stderr).toBe(0);
  }, 300_000);

  describe("restore falls back to the newest good point", () => {
    let upto = "";
    const restoredEvents = (target: string) => restoredLabels(target, "events");
    async function deleteVersion(key: string, versionId: string | null): Promise<void> {
      await w.bucket.client.send(new DeleteObjectCommand({ Bucket: w.bucket.bucket, Key: key, VersionId: versionId ?? undefined, BypassGovernanceRetention: true }));
    }

    /** A new base whose manifest alone is then deleted (its data intact); returns its id. */
    async function baseWithoutManifest(): Promise<string> {
      const b = json<Summary>(await w.run(["backup", "--type", "full", "--no-logical", "--json"], env, { timeoutMs: 180_000 }));
      const [manifest] = await catalog<{ object_key: string; version_id: string | null }>("SELECT object_key, version_id FROM backup_artifact WHERE backup_id = $1 AND role = 'manifest'", [b.backupId]);
      expect(manifest, "the manifest's artifact row").toBeTruthy();
      await deleteVersion(manifest!.object_key, manifest!.version_id);
      return b.backupId;
    }

    it("a WAL segment missing in the middle of the chain: restore replays up to it, reaches the point before it, and says so", async () => {
      await pgQuery(primary.urlFor("app"), "CREATE TABLE events (id serial PRIMARY KEY, label text NOT NULL)");
      json<Summary>(await w.run(["backup", "--type", "full", "--no-logical", "--json"], env, { timeoutMs: 180_000 }));
      await pgQuery(primary.urlFor("app"), "INSERT INTO events (label) VALUES ('before')");
      upto = String(json<Summary>(await w.run(["backup", "--type", "incremental", "--json"], env, { timeoutMs: 180_000 })).details.uptoSegment);
      await pgQuery(primary.urlFor("app"), "INSERT INTO events (label) VALUES ('after')");
      json<Summary>(await w.run(["backup", "--type", "incremental", "--json"], env, { timeoutMs: 180_000 }));
      const [gone] = await catalog<{ segment_name: string; object_key: string; version_id: string | null }>(
        "SELECT segment_name, object_key, version_id FROM wal_segment WHERE service_name = $1 AND segment_name > $2 AND segment_name ~ '^[0-9A-F]{24}$' ORDER BY segment_name LIMIT 1",
        [SERVICE, upto],
      );
      expect(gone, `no WAL segment recorded after ${upto}`).toBeTruthy();
      await deleteVersion(gone!.object_key, gone!.version_id);

      const target = path.join(w.root, "restore-wal-gap");
      const r = await w.run(["restore", "--target", target, "--owner", owner()], env, { timeoutMs: 300_000 });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`FELL BACK: WAL ${gone!.segment_name} is damaged or missing \\(.*\\): the restore stops before it, at \\d{4}-`));
      expect(r.stderr).toMatch(new RegExp(`restore pg-faults: WAL ${gone!.segment_name} is damaged or missing`));
      // Segments are fetched a few at a time: none from the gap on is left staged for the replay.
      const staged = readdirSync(path.join(target, "kdr_restore_wal"));
      expect(staged.length).toBeGreaterThan(0);
      expect(staged.filter((f) => f >= gone!.segment_name)).toEqual([]);
      expect(await restoredEvents(target)).toEqual(["before"]);
    }, 600_000);

    it("a base whose object is gone: restore records it as a failed verify and falls back to the base before it, saying so", async () => {
      const newest = json<Summary>(await w.run(["backup", "--type", "full", "--no-logical", "--json"], env, { timeoutMs: 180_000 }));
      const [base] = await catalog<{ object_key: string; version_id: string | null }>("SELECT object_key, version_id FROM backup_artifact WHERE backup_id = $1 AND role = 'base'", [newest.backupId]);
      await deleteVersion(base!.object_key, base!.version_id);

      const target = path.join(w.root, "restore-base-gone");
      const r = await w.run(["restore", "--target", target, "--owner", owner(), "--json"], env, { timeoutMs: 300_000 });
      const sum = json<{ backupId: string; fellBack: string[] }>(r);
      expect(sum.backupId).not.toBe(newest.backupId);
      expect(sum.fellBack[0]).toMatch(new RegExp(`^backup ${newest.backupId} \\(point [^)]+\\) is damaged: `));
      expect(r.stderr).toMatch(new RegExp(`restore pg-faults: backup ${newest.backupId} is damaged \\(.*\\); recorded as a failed verify, so no plan uses it again`));
      const [row] = await catalog<{ verify_status: string; by: string }>("SELECT verify_status, verify_details->>'by' AS by FROM backup_management WHERE backup_id = $1", [newest.backupId]);
      expect(row).toEqual({ verify_status: "failed", by: "restore" });
      // The older base, and the WAL after it up to the segment still missing from the test before.
      expect(await restoredEvents(target)).toEqual(["before"]);
    }, 600_000);

    it("a base whose manifest alone is gone (its data intact): restore does not trust it, records a failed verify, and falls back", async () => {
      const newest = { backupId: await baseWithoutManifest() };
      const target = path.join(w.root, "restore-manifest-gone");
      const r = await w.run(["restore", "--target", target, "--owner", owner(), "--json"], env, { timeoutMs: 300_000 });
      const sum = json<{ backupId: string; fellBack: string[] }>(r);
      expect(sum.backupId).not.toBe(newest.backupId);
      expect(sum.fellBack[0]).toMatch(new RegExp(`^backup ${newest.backupId} \\(point [^)]+\\) is damaged: .*manifest`));
      const [row] = await catalog<{ verify_status: string; by: string }>("SELECT verify_status, verify_details->>'by' AS by FROM backup_management WHERE backup_id = $1", [newest.backupId]);
      expect(row).toEqual({ verify_status: "failed", by: "restore" });
      expect(await restoredEvents(target)).toEqual(["before"]);
    }, 600_000);

    it("a base whose manifest alone is gone, verified: verify fails naming the manifest, and records it", async () => {
      const b = { backupId: await baseWithoutManifest() };
      const v = await w.run(["verify", "--backup-id", b.backupId], env, { timeoutMs: 180_000 });
      expect(v.code, v.stdout + v.stderr).toBe(1);
      expect(v.stdout).toMatch(new RegExp(`verify ${b.backupId}: FAILED`));
      expect(v.stdout + v.stderr).toMatch(/manifest/);
      const [row] = await catalog<{ verify_status: string }>("SELECT verify_status FROM backup_management WHERE backup_id = $1", [b.backupId]);
      expect(row!.verify_status).toBe("failed");
    }, 300_000);
  });
});
