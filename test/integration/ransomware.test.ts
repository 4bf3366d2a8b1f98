/**
 * The ransomware drill (issue #16): with the primary region's *admin* credentials, an attacker
 * deletes every object of a backup bucket and puts garbage over every key, and drops a note of its
 * own. The bucket is versioned with GOVERNANCE default retention, as the stacks declare it. Against
 * the real agent (a PostgreSQL 15 base backup and a restic volume repository), the local RGW and a
 * real catalog:
 * - the locked versions cannot be deleted without the bypass header;
 * - after the attack the volume's repository cannot be restored (restic reads only current objects);
 * - `kryonix-dr s3 rewind --to <before the attack>` (dry run first) makes each key's version of that
 *   moment current again and hides the note, deleting nothing; a second run changes nothing;
 * - both backups then verify, and restores bring back every row and every file;
 * - an object larger than one copy's part size is copied back in parts, byte for byte;
 * - what the lock mode allows the admin key: the bypass header destroys a GOVERNANCE version (the
 *   stacks' default), and not a COMPLIANCE one before its retention ends.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, ListObjectVersionsCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { treeHashes } from "../support/tree.js";
import { putDefaultRetention } from "../../cli/commands/s3.js";
import { rewindBucket, type RewindReport } from "../../cli/s3-rewind.js";
import { readPlatform } from "../../local/platform.js";
import { agentWorld, pgQuery, prepareBackupRole, s3Client, startRestored, type AgentResult, type AgentWorld } from "../support/s3.js";
import { runAsync } from "../support/spawn.js";
import { startTmpPostgres, type TmpPostgres } from "../support/tmp-postgres.js";

const ROOT = path.resolve(__dirname, "..", "..");
const CLI = path.join(ROOT, "bin", "kryonix-dr.mjs");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

let w: AgentWorld;
let primary: TmpPostgres;
let pgEnv: Record<string, string>;
let volEnv: Record<string, string>;
let vol: string;
let before: Date;
let pgBackup: string;
let volBackup: string;
let bigSha: string;
const NOTE = "README-YOUR-BACKUPS-ARE-ENCRYPTED.txt";

function ok<T>(r: AgentResult): T {
  if (r.code !== 0) throw new Error(`agent exited ${r.code}\n${r.stderr}\n${r.stdout}`);
  return JSON.parse(r.stdout) as T;
}

/** The primary region's admin: what the attacker holds, and what the operator rewinds with. */
const admin = () => {
  const r = readPlatform().regions.primary;
  return { client: s3Client(r.loopbackEndpoint, r.name, r.accessKey, r.secretKey), env: { KDR_S3_ENDPOINT: r.loopbackEndpoint, KDR_S3_REGION: r.name, AWS_ACCESS_KEY_ID: r.accessKey, AWS_SECRET_ACCESS_KEY: r.secretKey } };
};

async function currentKeys(): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const res = await w.bucket.client.send(new ListObjectsV2Command({ Bucket: w.bucket.bucket, ContinuationToken: token }));
    keys.push(...(res.Contents ?? []).map((o) => o.Key!));
    token = res.NextContinuationToken;
  } while (token);
  return keys;
}

async function allVersionIds(): Promise<Set<string>> {
  const ids = new Set<string>();
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  for (;;) {
    const res = await w.bucket.client.send(new ListObjectVersionsCommand({ Bucket: w.bucket.bucket, KeyMarker: keyMarker, VersionIdMarker: versionMarker }));
    for (const v of [...(res.Versions ?? []), ...(res.DeleteMarkers ?? [])]) ids.add(`${v.Key}@${v.VersionId}`);
    if (!res.IsTruncated) return ids;
    keyMarker = res.NextKeyMarker;
    versionMarker = res.NextVersionIdMarker;
  }
}

async function rewindCli(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return runAsync(process.execPath, [CLI, "s3", "rewind", "--bucket", w.bucket.bucket, ...args], { env: { ...process.env, ...admin().env }, timeoutMs: 120_000, cwd: ROOT });
}

/** Every current key deleted, then garbage put over every key, then a note: with the admin key. */
async function attack(keys: string[]): Promise<void> {
  const { client } = admin();
  for (const Key of keys) await client.send(new DeleteObjectCommand({ Bucket: w.bucket.bucket, Key }));
  for (const Key of keys) await client.send(new PutObjectCommand({ Bucket: w.bucket.bucket, Key, Body: randomBytes(512) }));
  await client.send(new PutObjectCommand({ Bucket: w.bucket.bucket, Key: NOTE, Body: "pay up" }));
}

beforeAll(async () => {
  w = await agentWorld("kdrtest-ransomware");
  await putDefaultRetention(admin().client, w.bucket.bucket, "GOVERNANCE", 1);
  primary = await startTmpPostgres();
  pgEnv = w.env("pg-ransom", await prepareBackupRole(primary, w.secretDir));
  await pgQuery(primary.urlFor("app"), "CREATE TABLE ledger (id int PRIMARY KEY, label text NOT NULL)");
  await pgQuery(primary.urlFor("app"), "INSERT INTO ledger SELECT g, 'entry ' || g FROM generate_series(1, 5000) g");
  vol = path.join(w.root, "volume");
  for (let d = 0; d < 3; d++) {
    mkdirSync(path.join(vol, `dir${d}`), { recursive: true });
    for (let i = 0; i < 20; i++) writeFileSync(path.join(vol, `dir${d}`, `file${i}.bin`), randomBytes(16 * 1024));
  }
  volEnv = w.env("files-ransom", { KDR_ENGINE: "volume", KDR_VOLUME_PATH: vol });
  pgBackup = ok<{ backupId: string }>(await w.run(["backup", "--type", "full", "--no-logical", "--json"], pgEnv, { timeoutMs: 180_000 })).backupId;
  volBackup = ok<{ backupId: string }>(await w.run(["backup", "--type", "full", "--json"], volEnv)).backupId;
  // An object above one copy's part size (5 MiB, S3's smallest part), for the copy in parts.
  const big = randomBytes(11 * 1024 * 1024);
  bigSha = sha(big);
  await w.bucket.client.send(new PutObjectCommand({ Bucket: w.bucket.bucket, Key: "big/blob", Body: big }));
  // The operator's moment: after the last good write, before the attack (S3 times are to the second).
  await sleep(1200);
  before = new Date();
  await sleep(1200);
}, 300_000);

afterAll(async () => {
  await primary?.stop().catch(() => undefined);
  await w?.close();
});

describe("ransomware drill: the primary region's admin key deletes and overwrites every backup", () => {
  let keysAtMoment: string[];
  /** Keys with versions that were already deleted at the moment (restic's released locks). */
  let absentThen: string[];
  let versionsBeforeRewind: Set<string>;

  it("the attack: locked versions cannot be deleted without the bypass header; every key deleted and overwritten; the volume no longer restores", async () => {
    keysAtMoment = await currentKeys();
    absentThen = [...new Set([...(await allVersionIds())].map((v) => v.slice(0, v.lastIndexOf("@"))))].filter((k) => !keysAtMoment.includes(k));
    expect(absentThen.length, "restic released its locks").toBeGreaterThan(0);
    for (const k of absentThen) expect(k).toMatch(/^restic\/files-ransom\/g1\/locks\//);
    expect(keysAtMoment.some((k) => k.startsWith("restic/files-ransom/"))).toBe(true);
    expect(keysAtMoment.some((k) => k.startsWith("full/pg-ransom/"))).toBe(true);
    // Even the admin key cannot destroy a locked version without asking to bypass GOVERNANCE.
    const v = (await w.bucket.client.send(new ListObjectVersionsCommand({ Bucket: w.bucket.bucket, Prefix: "full/pg-ransom/" }))).Versions![0]!;
    await expect(admin().client.send(new DeleteObjectCommand({ Bucket: w.bucket.bucket, Key: v.Key!, VersionId: v.VersionId }))).rejects.toMatchObject({ name: "AccessDenied" });

    await attack(keysAtMoment);
    const now = await currentKeys();
    expect(now.sort()).toEqual([...keysAtMoment, NOTE].sort());
    const r = await w.run(["restore", "--target", path.join(w.root, "restore-attacked")], volEnv);
    expect(r.code, r.stderr).not.toBe(0);
    versionsBeforeRewind = await allVersionIds();
  }, 300_000);

  it("`s3 rewind --dry-run` says what it would change and writes nothing; bad input is refused naming the fix", async () => {
    const dry = await rewindCli(["--to", before.toISOString(), "--dry-run", "--json"]);
    expect(dry.status, dry.stderr).toBe(0);
    const report = JSON.parse(dry.stdout) as RewindReport;
    expect(report.restored.map((x) => x.key).sort()).toEqual([...keysAtMoment].sort());
    expect(report.hidden).toEqual([NOTE]);
    // A key already deleted at the moment stays deleted: no released restic lock comes back.
    expect(report.unchanged).toBe(absentThen.length);
    expect(await allVersionIds()).toEqual(versionsBeforeRewind);

    const future = await rewindCli(["--to", new Date(Date.now() + 3_600_000).toISOString()]);
    expect(future.status).not.toBe(0);
    expect(future.stderr).toMatch(/--to \S+ is in the future: give the moment before the objects were deleted or overwritten/);
    const bad = await rewindCli(["--to", "yesterday"]);
    expect(bad.stderr).toMatch(/--to 'yesterday' is not an ISO time with a zone: give e\.g\. /);
    const empty = await rewindCli(["--to", before.toISOString(), "--prefix", "nothing-here/"]);
    expect(empty.stderr).toMatch(/holds no object and no version: check --bucket and --prefix/);
    expect(await allVersionIds()).toEqual(versionsBeforeRewind);
  }, 120_000);

  it("`s3 rewind` restores every key to its version at the moment and hides the note, deleting no version; a second run changes nothing", async () => {
    const r = await rewindCli(["--to", before.toISOString()]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`rewound to ${before.toISOString().replace(/\./g, "\\.")}: ${keysAtMoment.length + absentThen.length + 1} key\\(s\\) looked at, ${absentThen.length} already as they were, ${keysAtMoment.length} restored`));
    expect(r.stdout).toMatch(/1 written after it hidden behind a delete marker/);
    expect(r.stdout).toMatch(/Nothing was deleted: every version written after that moment is still in the bucket/);
    expect((await currentKeys()).sort()).toEqual([...keysAtMoment].sort());
    const after = await allVersionIds();
    for (const v of versionsBeforeRewind) expect(after.has(v), v).toBe(true);

    const again = await rewindCli(["--to", before.toISOString(), "--json"]);
    expect(again.status, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ keys: keysAtMoment.length + absentThen.length + 1, unchanged: keysAtMoment.length + absentThen.length + 1, restored: [], hidden: [] });
  }, 180_000);

  it("after the rewind both backups verify, and restores bring back every row and every file", async () => {
    for (const [id, env] of [[pgBackup, pgEnv], [volBackup, volEnv]] as const) {
      const v = ok<{ passed: boolean }>(await w.run(["verify", "--backup-id", id, "--json"], env, { timeoutMs: 180_000 }));
      expect(v.passed, id).toBe(true);
    }
    const files = path.join(w.root, "restore-files");
    const r = await w.run(["restore", "--target", files], volEnv);
    expect(r.code, r.stderr).toBe(0);
    expect(treeHashes(files)).toEqual(treeHashes(vol));

    const data = path.join(w.root, "restore-pg");
    const p = await w.run(["restore", "--target", data], pgEnv, { timeoutMs: 180_000 });
    expect(p.code, p.stderr).toBe(0);
    const srv = await startRestored(data, primary.password);
    try {
      const [row] = await pgQuery<{ n: string; h: string }>(srv.url("app"), "SELECT count(*) AS n, md5(string_agg(label, ',' ORDER BY id)) AS h FROM ledger");
      const [orig] = await pgQuery<{ n: string; h: string }>(primary.urlFor("app"), "SELECT count(*) AS n, md5(string_agg(label, ',' ORDER BY id)) AS h FROM ledger");
      expect(row).toEqual(orig);
    } finally {
      srv.stop();
    }
  }, 400_000);

  it("an object larger than one copy's part size is copied back in parts, byte for byte", async () => {
    const { client } = admin();
    await client.send(new PutObjectCommand({ Bucket: w.bucket.bucket, Key: "big/blob", Body: randomBytes(1024) }));
    const report = await rewindBucket(client, w.bucket.bucket, { to: before, prefix: "big/", partBytes: 5 * 1024 * 1024 });
    expect(report.restored).toEqual([expect.objectContaining({ key: "big/blob", bytes: 11 * 1024 * 1024 })]);
    const got = await w.bucket.client.send(new GetObjectCommand({ Bucket: w.bucket.bucket, Key: "big/blob" }));
    expect(sha(Buffer.from(await got.Body!.transformToByteArray()))).toBe(bigSha);
  }, 120_000);

  it("the lock mode decides what the admin key can destroy: with the bypass header it deletes a GOVERNANCE version, and not a COMPLIANCE one until its retention ends", async () => {
    const { client } = admin();
    const put = (Key: string, mode: "GOVERNANCE" | "COMPLIANCE") =>
      client.send(new PutObjectCommand({ Bucket: w.bucket.bucket, Key, Body: "locked", ObjectLockMode: mode, ObjectLockRetainUntilDate: new Date(Date.now() + 8_000) }));
    const gov = await put("mode/governance", "GOVERNANCE");
    await client.send(new DeleteObjectCommand({ Bucket: w.bucket.bucket, Key: "mode/governance", VersionId: gov.VersionId, BypassGovernanceRetention: true }));
    const comp = await put("mode/compliance", "COMPLIANCE");
    const destroy = () => client.send(new DeleteObjectCommand({ Bucket: w.bucket.bucket, Key: "mode/compliance", VersionId: comp.VersionId, BypassGovernanceRetention: true }));
    await expect(destroy()).rejects.toMatchObject({ name: "AccessDenied" });
    // Its retention (8 s here) over, it goes like any version: the bucket can be removed after the test.
    await sleep(9_000);
    await destroy();
  }, 60_000);
});
