/**
 * The life of a volume service's restic repositories.
 *
 * Why this exists: restic 0.14 writes a key before the config in `init`, does not refuse to init
 * a prefix that already holds a key (newer restic does), and opens a repository with the first
 * key the password fits. Two inits in one place (two jobs racing, or an init stopped after its
 * key) leave a key whose master key does not match the config, and from then on every run that
 * happens to try that key first fails with "config or key ... is damaged: ciphertext
 * verification failed". On a locked bucket nothing can repair that in place.
 *
 * So:
 * - a repository is initialised exactly once, under the service's backup lock, and only into a
 *   prefix that holds nothing at all (`restic/<service>/g<N>/`, one prefix per generation);
 * - its key id is recorded (catalog, and a descriptor object beside the repository, so storage
 *   alone says how to open it) and passed as RESTIC_KEY_HINT on every later command;
 * - a repository that opens with no key at all is marked failed in the catalog, counted in
 *   `kdr_restic_repository_failures_total`, and the backup goes on in generation N+1, starting
 *   with a full; restores still open every older generation that opens.
 */
import { ConfigError, type Settings } from "../config.js";
import * as cat from "../catalog.js";
import { m } from "../metrics.js";
import { spawnTool } from "../storage/pipeline.js";
import { log } from "../storage/progress.js";
import type { Lock, Storage } from "../storage/s3.js";
import { AGENT_ENV, objectPrefix, RESTIC_DESCRIPTOR, resticGeneration, resticRepoPrefix } from "../../contract/index.js";
import type pg from "pg";
import path from "node:path";

/** Where one generation lives and the key that opens it (absent: try every key). */
export interface RepoRef {
  prefix: string;
  keyId?: string;
}

export interface ActiveRepo extends RepoRef {
  generation: number;
  keyId: string;
  repositoryId: string;
}

/** Stored beside the restic files of each generation; restic ignores objects it does not know. */
export interface RepoDescriptor {
  format: "kdr-restic-repository/1";
  tenantId: string;
  service: string;
  generation: number;
  repositoryId: string;
  keyId: string;
  createdAt: string;
}

/** The repository cannot be opened with any key: it will never be written again. */
export class ResticDamagedError extends Error {}

const DAMAGE = /ciphertext verification failed|is damaged|unable to open config file|config file .*(invalid|corrupt)|unsupported repository version/i;
const WRONG_PASSWORD = /wrong password or no key found/i;

export function resticEnv(s: Settings, repo: RepoRef): NodeJS.ProcessEnv {
  const endpoint = s.require("s3Endpoint").replace(/\/+$/, "");
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    RESTIC_REPOSITORY: `s3:${endpoint}/${s.require("s3Bucket")}/${repo.prefix.replace(/\/$/, "")}`,
    RESTIC_PASSWORD_FILE: s.secretPath("resticPassword"),
    AWS_ACCESS_KEY_ID: s.secret("s3AccessKey"),
    AWS_SECRET_ACCESS_KEY: s.secret("s3SecretKey"),
    AWS_DEFAULT_REGION: s.get("s3Region") ?? "us-east-1",
    RESTIC_CACHE_DIR: path.join(s.stateDir, "restic-cache"),
  };
  delete env.RESTIC_KEY_HINT;
  if (repo.keyId) env.RESTIC_KEY_HINT = repo.keyId;
  return env;
}

/**
 * Runs restic on one repository. A wrong password and a damaged repository become errors that
 * say which and what to do; anything else (network, S3 permissions) is passed on as it is.
 */
export async function restic(
  s: Settings,
  repo: RepoRef,
  args: string[],
  opts: { onLine?: (l: string) => void; cwd?: string } = {},
): Promise<string> {
  s.secret("resticPassword"); // a missing password file gets the standard, clear message
  const r = spawnTool("restic", args, { env: resticEnv(s, repo), stdin: "ignore", cwd: opts.cwd });
  let out = "";
  let buf = "";
  r.child.stdout!.on("data", (d: Buffer) => {
    out += d;
    if (!opts.onLine) return;
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      opts.onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  try {
    await r.exited;
  } catch (e) {
    const msg = (e as Error).message;
    if (WRONG_PASSWORD.test(msg)) {
      throw new ConfigError(
        `restic cannot open the repository at ${repo.prefix} with the password in ${s.secretPath("resticPassword")} (no key there fits it): put the repository's password into the kdr-restic-password secret. A new password needs a new repository; the old one keeps its own.`,
      );
    }
    if (DAMAGE.test(msg)) throw new ResticDamagedError(`restic repository ${repo.prefix}: ${msg.replace(/^restic exited \d+: /, "")}`);
    throw e;
  }
  return out;
}

/** The keys/ of a repository prefix, as full ids. */
async function keyIds(storage: Storage, prefix: string): Promise<string[]> {
  return (await storage.list(`${prefix}keys/`)).keys.map((k) => k.slice(`${prefix}keys/`.length)).filter((k) => /^[0-9a-f]{64}$/.test(k));
}

/**
 * Opens a repository for reading: the hinted key first, then every other key in keys/, so an
 * orphan key left by an interrupted or racing init is recognised and skipped. Returns the key
 * that opened it and the repository id. Throws ResticDamagedError when no key opens it.
 */
export async function openRepo(s: Settings, storage: Storage, repo: RepoRef): Promise<{ keyId: string; repositoryId: string; orphanKeys: string[] }> {
  const keys = await keyIds(storage, repo.prefix);
  if (keys.length === 0) {
    const anything = (await storage.list(repo.prefix, { max: 1 })).keys.length > 0;
    throw new ResticDamagedError(`restic repository ${repo.prefix}: ${anything ? "has no key (keys/ is empty)" : "does not exist (nothing under the prefix)"}`);
  }
  const order = repo.keyId && keys.includes(repo.keyId) ? [repo.keyId, ...keys.filter((k) => k !== repo.keyId)] : keys;
  const failures: string[] = [];
  for (const k of order) {
    try {
      // --no-lock: restore users are read-only, and opening needs no lock.
      // restic tries the hinted key first and uses it when the password fits; only a key the
      // password does not fit makes it fall back to the others. Our keys all share one password,
      // so success here means key k opened it. (`restic key list` would say so too, but in 0.14
      // it takes a lock even with --no-lock, which a read-only restore user cannot.)
      const cfg = JSON.parse(await restic(s, { prefix: repo.prefix, keyId: k }, ["--no-lock", "cat", "config", "--json"])) as { id: string };
      return { keyId: k, repositoryId: cfg.id, orphanKeys: keys.filter((x) => x !== k) };
    } catch (e) {
      if (!(e instanceof ResticDamagedError)) throw e;
      failures.push(`${k.slice(0, 8)}: ${e.message.split("\n").slice(-1)[0]}`);
    }
  }
  throw new ResticDamagedError(`restic repository ${repo.prefix} opens with none of its ${keys.length} key(s): ${failures.join("; ")}`);
}

/** The descriptor of a generation, or undefined when there is none (an init that never finished). */
export async function readDescriptor(storage: Storage, prefix: string): Promise<RepoDescriptor | undefined> {
  const key = `${prefix}${RESTIC_DESCRIPTOR}`;
  if (!(await storage.exists(key))) return undefined;
  const d = JSON.parse(await storage.getText(key)) as RepoDescriptor;
  if (d.format !== "kdr-restic-repository/1") throw new Error(`${key}: unknown format ${JSON.stringify(d.format)}`);
  return d;
}

/** The repository (prefix and key) a stored snapshot belongs to, from the snapshot's object key. */
export async function repoOfSnapshot(storage: Storage, snapshotKey: string): Promise<RepoRef> {
  const i = snapshotKey.lastIndexOf("snapshots/");
  if (i < 0) throw new Error(`${snapshotKey} is not a restic snapshot key (…/snapshots/<id>)`);
  const prefix = snapshotKey.slice(0, i);
  const d = resticGeneration(prefix) !== undefined ? await readDescriptor(storage, prefix).catch(() => undefined) : undefined;
  return { prefix, keyId: d?.keyId };
}

function reportFailure(service: string, generation: number, reason: string): void {
  m.resticRepoFailures.inc({ service });
  log(`ALERT restic repository generation ${generation} of ${service} is unusable and will never be written again: ${reason}`);
}

/**
 * The generation backups go to, initialised if there is none. Call only while holding the
 * service's backup lock: that lock is what makes the init happen exactly once.
 */
export async function writableRepo(s: Settings, c: pg.Client, storage: Storage, lock: Lock | undefined): Promise<ActiveRepo & { started: boolean }> {
  const service = s.service;
  const tenantId = s.tenantId;
  const rows = await cat.listResticRepositories(c, { tenantId, service });
  const active = rows.find((r) => r.status === "active");
  if (active) {
    try {
      const o = await openRepo(s, storage, { prefix: active.prefix, keyId: active.keyId ?? undefined });
      if (o.repositoryId !== active.repositoryId) {
        throw new ResticDamagedError(`restic repository ${active.prefix} now has id ${o.repositoryId}, but ${active.repositoryId} was initialised there: its config was replaced`);
      }
      if (o.keyId !== active.keyId) {
        log(`restic: generation ${active.generation} of ${service} opened with key ${o.keyId.slice(0, 8)}, not the recorded ${active.keyId?.slice(0, 8)}; pinned it`);
        await cat.pinRepositoryKey(c, tenantId, service, active.generation, o.keyId);
      }
      if (o.orphanKeys.length) log(`restic: generation ${active.generation} of ${service} holds ${o.orphanKeys.length} key(s) that do not open it (${o.orphanKeys.map((k) => k.slice(0, 8)).join(", ")}); ignored`);
      m.resticGeneration.set({ service }, active.generation);
      return { generation: active.generation, prefix: active.prefix, keyId: o.keyId, repositoryId: o.repositoryId, started: false };
    } catch (e) {
      if (!(e instanceof ResticDamagedError)) throw e;
      await cat.recordFailedRepository(c, { tenantId, service, generation: active.generation, bucket: storage.bucket, prefix: active.prefix, failure: e.message });
      reportFailure(service, active.generation, e.message);
    }
  }

  // Generations the storage holds that the catalog does not know as failed: a rebuilt or new
  // catalog adopts an intact one; anything else there is never reused.
  const failed = new Set(rows.filter((r) => r.status === "failed").map((r) => r.generation));
  const stored = (await storage.list(objectPrefix("restic", service), { delimiter: "/" })).prefixes
    .map((p) => resticGeneration(p))
    .filter((g): g is number => g !== undefined)
    .sort((a, b) => b - a);
  if (!active) {
    for (const g of stored.filter((x) => !failed.has(x))) {
      const prefix = resticRepoPrefix(service, g);
      const d = await readDescriptor(storage, prefix);
      if (d && (d.service !== service || d.tenantId !== tenantId)) {
        throw new ConfigError(
          `${prefix} holds the restic repository of service '${d.service}' (tenant ${d.tenantId}), not of '${service}' (tenant ${tenantId}): check ${AGENT_ENV.service}, ${AGENT_ENV.tenantId} and ${AGENT_ENV.s3Bucket}. Nothing was written.`,
        );
      }
      try {
        if (!d) throw new ResticDamagedError(`restic repository ${prefix} has no ${RESTIC_DESCRIPTOR}: its init never finished`);
        const o = await openRepo(s, storage, { prefix, keyId: d.keyId });
        if (o.repositoryId !== d.repositoryId) throw new ResticDamagedError(`restic repository ${prefix} has id ${o.repositoryId}, its descriptor says ${d.repositoryId}`);
        await cat.recordActiveRepository(c, { tenantId, service, generation: g, bucket: storage.bucket, prefix, repositoryId: o.repositoryId, keyId: o.keyId });
        log(`restic: adopted generation ${g} of ${service} found in storage (key ${o.keyId.slice(0, 8)})`);
        m.resticGeneration.set({ service }, g);
        return { generation: g, prefix, keyId: o.keyId, repositoryId: o.repositoryId, started: false };
      } catch (e) {
        if (!(e instanceof ResticDamagedError)) throw e;
        await cat.recordFailedRepository(c, { tenantId, service, generation: g, bucket: storage.bucket, prefix, failure: e.message });
        reportFailure(service, g, e.message);
      }
    }
  }

  let generation = Math.max(0, ...rows.map((r) => r.generation), ...stored) + 1;
  for (;;) {
    const prefix = resticRepoPrefix(service, generation);
    if ((await storage.list(prefix, { max: 1 })).keys.length > 0) {
      // Written between our listing and now: never init over anything.
      await cat.recordFailedRepository(c, { tenantId, service, generation, bucket: storage.bucket, prefix, failure: "the prefix was not empty when a new repository was to be initialised there" });
      generation++;
      continue;
    }
    log(`restic: initialising repository generation ${generation} for ${service} at ${prefix}`);
    try {
      await restic(s, { prefix }, ["init"]);
    } catch (e) {
      // Never init the same prefix twice: the next run starts the next generation.
      await cat.recordFailedRepository(c, { tenantId, service, generation, bucket: storage.bucket, prefix, failure: `restic init failed: ${(e as Error).message}` });
      throw e;
    }
    const keys = await keyIds(storage, prefix);
    if (keys.length !== 1) {
      const why = `restic init left ${keys.length} keys in ${prefix}keys/ (expected exactly 1): another writer was there`;
      await cat.recordFailedRepository(c, { tenantId, service, generation, bucket: storage.bucket, prefix, failure: why });
      throw new Error(why);
    }
    const keyId = keys[0]!;
    const cfg = JSON.parse(await restic(s, { prefix, keyId }, ["--no-lock", "cat", "config", "--json"])) as { id: string };
    const d: RepoDescriptor = { format: "kdr-restic-repository/1", tenantId, service, generation, repositoryId: cfg.id, keyId, createdAt: new Date().toISOString() };
    await storage.putSmall(`${prefix}${RESTIC_DESCRIPTOR}`, JSON.stringify(d, null, 2), lock);
    await cat.recordActiveRepository(c, { tenantId, service, generation, bucket: storage.bucket, prefix, repositoryId: cfg.id, keyId });
    m.resticGeneration.set({ service }, generation);
    log(`restic: generation ${generation} of ${service} ready (repository ${cfg.id.slice(0, 8)}, key ${keyId.slice(0, 8)})`);
    return { generation, prefix, keyId, repositoryId: cfg.id, started: true };
  }
}
