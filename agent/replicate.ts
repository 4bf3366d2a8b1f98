/**
 * Replication for S3 targets without native bucket replication: every new object version in
 * the primary bucket is copied (streamed) to the replica bucket with the same key and the same
 * object-lock mode and retain-until date. What was copied is remembered in the state dir by
 * source version id, so a pass only moves new versions. With a catalog configured, every copy is
 * recorded there (object_copy) with the copy's own version id in the replica region, so a restore
 * from that region can find it and the catalog can say how far each service's copies lag; a copy
 * the catalog could not take yet is kept in the state dir and recorded on a later pass. Services
 * are copied side by side, each in its own lane (Replicator).
 *
 * A copy is never sent back where it came from: each copy carries the object metadata
 * `kdr-copy-of` (source endpoint, bucket and version), and the catalog knows every recorded copy,
 * so a replicator running the other way (the dr stack's, after a failover) copies only what was
 * written in its region, and the forward one, after a failback, does not send those back again.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Gauge } from "prom-client";
import type { Readable } from "node:stream";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { AGENT_ENV } from "../contract/index.js";
import * as cat from "./catalog.js";
import { ConfigError, type Settings } from "./config.js";
import { registry } from "./metrics.js";
import { httpServer } from "./serve.js";
import { log } from "./storage/progress.js";
import { Storage, retryWithin, withRetry } from "./storage/s3.js";

const backlog = new Gauge({ name: "kdr_replication_backlog_objects", help: "Object versions not yet copied to the replica", registers: [registry] });
const lag = new Gauge({ name: "kdr_replication_lag_seconds", help: "Age of the oldest object version not yet copied", registers: [registry] });
/** User metadata on every copy: where it was copied from. */
export const COPY_OF_META = "kdr-copy-of";

const copied = new Gauge({ name: "kdr_replication_last_pass_copied", help: "Versions copied by the last pass", registers: [registry] });

/** Where a pass records its copies: the catalog and the replica region's name. */
export interface CopyLog {
  db: cat.Db;
  /** The replica region's name (for people; copies are keyed by the replica's endpoint). */
  region: string;
}

function readJson<T>(file: string, fallback: T): T {
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as T) : fallback;
}

function writeJson(file: string, value: unknown): void {
  writeFileSync(file + ".tmp", JSON.stringify(value));
  renameSync(file + ".tmp", file);
}

/** What a pass found to copy, filled in as it goes: what it did not copy is its backlog. */
export interface PassTrack {
  /** Set once the source was listed: every service seen there, and the versions to copy. */
  listed?: { services: Set<string>; pending: { key: string; versionId?: string; lastModified?: Date }[]; done: Set<string> };
  /** Called once the listing is known (before any copy): the backlog this pass starts from. */
  onListed?: () => Promise<void>;
}

/** The service a key belongs to, when it follows the layout and is a valid service name (an odd key must not stop every report). */
const serviceOf = (key: string): string | undefined => {
  const svc = cat.serviceOfKey(key);
  return svc && /^[a-z0-9][a-z0-9_.-]*$/.test(svc) && svc.length <= 100 ? svc : undefined;
};

/** Per service of the listing, the versions not copied (copies not sent back count as handled). */
export function backlogOf(track: PassTrack): Map<string, { objects: number; oldestAt: Date }> | undefined {
  const l = track.listed;
  if (!l) return undefined;
  const out = new Map<string, { objects: number; oldestAt: Date }>([...l.services].map((svc) => [svc, { objects: 0, oldestAt: new Date(0) }]));
  for (const v of l.pending) {
    const svc = serviceOf(v.key);
    if (!svc || l.done.has(v.versionId!)) continue;
    const e = out.get(svc)!;
    const at = v.lastModified ?? new Date();
    e.oldestAt = e.objects === 0 || at < e.oldestAt ? at : e.oldestAt;
    e.objects++;
  }
  return out;
}

/**
 * Where a replicator remembers what it copied: per source and replica, the S3 servers included (a
 * replica moved to another server with the same bucket names gets everything again). Files named
 * by the buckets alone, as before, are taken over by the first pass.
 */
export function stateFiles(dir: string, src: Storage, dst: Storage): { stateFile: string; recordsFile: string } {
  const pair = createHash("sha256").update(`${cat.endpointOrigin(src.endpoint)} ${cat.endpointOrigin(dst.endpoint)}`).digest("hex").slice(0, 12);
  const base = path.join(dir, `replicate-${src.bucket}-to-${dst.bucket}`);
  mkdirSync(dir, { recursive: true });
  const out = { stateFile: `${base}-${pair}.json`, recordsFile: `${base}-${pair}-unrecorded.json` };
  for (const [old, now] of [[`${base}.json`, out.stateFile], [`${base}-unrecorded.json`, out.recordsFile]] as const) {
    if (existsSync(old) && !existsSync(now)) renameSync(old, now);
  }
  return out;
}

/** Copies in flight at once, one per service (lane): about 24 MiB of buffers each, within the replicator's 256 MiB. */
const COPY_LANES = 4;

type Version = { key: string; versionId?: string; lastModified?: Date; size: number };
export interface PassResult {
  copied: number;
  skipped: number;
  recorded: number;
  copiesNotSentBack: number;
  /** Versions listed but still queued or being copied when the pass ended (its time was up). */
  left: number;
}

/**
 * Copies a bucket's new versions to the replica, one lane per service: a service's versions are
 * copied one at a time, oldest first (so the replica's newest version of a key is the primary's
 * newest), and up to COPY_LANES services' at once, the one with the oldest waiting version first. A
 * service whose copies are large (Redis's whole RDBs) then no longer holds back another's small
 * ones (PostgreSQL's WAL). Lanes outlive a pass: a pass with a time limit ends on time, leaving
 * long copies running, and the next one lists again and queues only what is new.
 */
export class Replicator {
  private readonly stateFile: string;
  private readonly recordsFile: string;
  private done = new Set<string>();
  private unrecorded: (cat.ObjectCopy & { sourceCreatedAt?: Date })[] = [];
  private loaded = false;
  /** Per lane (service, or "" for keys outside the layout), the versions waiting, oldest first. */
  private readonly lanes = new Map<string, Version[]>();
  private readonly running = new Set<string>();
  /** Version ids queued or being copied (a later listing does not queue them again). */
  private readonly queued = new Set<string>();
  private readonly idleWaiters = new Set<() => void>();
  private recording: Promise<void> = Promise.resolve();
  private catalogDown: string | undefined;
  private readonly tally = { copied: 0, recorded: 0, notSentBack: 0, errors: [] as Error[] };

  constructor(
    s: Settings,
    private readonly src: Storage,
    private readonly dst: Storage,
    private readonly copyLog?: CopyLog,
  ) {
    ({ stateFile: this.stateFile, recordsFile: this.recordsFile } = stateFiles(s.stateDir, src, dst));
  }

  /** Once per replicator: what the state dir (or, without it, the catalog) says was copied. */
  private async load(): Promise<void> {
    if (this.loaded) return;
    const { src, dst, copyLog, stateFile } = this;
    this.done = new Set<string>(readJson<string[]>(stateFile, []));
    // No state file: a new container (the replicator's state is not on a volume; Swarm replaces the
    // container on every restart). The catalog knows every version copied to this replica: without
    // it, each restart copied the whole bucket again (new locked versions of every object).
    if (copyLog && !existsSync(stateFile)) {
      for (const v of await cat.copiedSources(copyLog.db, dst.endpoint, dst.bucket, src.bucket)) this.done.add(v);
      writeJson(stateFile, [...this.done]);
      if (this.done.size) log(`replicate ${src.bucket} -> ${dst.bucket}: ${this.done.size} version(s) already copied, as the catalog records (no state file here)`);
    }
    this.unrecorded = readJson<(cat.ObjectCopy & { sourceCreatedAt?: string })[]>(this.recordsFile, []).map((c) => ({ ...c, sourceCreatedAt: c.sourceCreatedAt ? new Date(c.sourceCreatedAt) : undefined }));
    this.loaded = true;
  }

  /** Records the copies the catalog has not taken, one caller at a time (lanes finish together). */
  private record(): Promise<void> {
    const drain = async () => {
      if (!this.copyLog) return;
      while (this.unrecorded.length > 0) {
        await cat.recordCopy(this.copyLog.db, this.unrecorded[0]!);
        this.unrecorded.shift();
        this.tally.recorded++;
      }
    };
    const p = this.recording.then(drain).finally(() => writeJson(this.recordsFile, this.unrecorded));
    this.recording = p.catch(() => undefined);
    return p;
  }

  private notBack(v: { versionId?: string }): void {
    this.done.add(v.versionId!);
    this.tally.notSentBack++;
  }

  private busy(): boolean {
    return this.running.size > 0 || [...this.lanes.values()].some((q) => q.length > 0);
  }

  /** Starts copies while lanes are free: the lane whose waiting version is oldest first. */
  private pump(): void {
    while (this.running.size < COPY_LANES) {
      let next: string | undefined;
      for (const [lane, q] of this.lanes) {
        if (q.length === 0 || this.running.has(lane)) continue;
        if (next === undefined || (q[0]!.lastModified?.getTime() ?? 0) < (this.lanes.get(next)![0]!.lastModified?.getTime() ?? 0)) next = lane;
      }
      if (next === undefined) break;
      const lane = next;
      const v = this.lanes.get(lane)!.shift()!;
      this.running.add(lane);
      void this.copy(v)
        .catch((e: Error) => {
          // The lane's other versions wait for a later pass (they are listed again), in order.
          for (const w of this.lanes.get(lane) ?? []) this.queued.delete(w.versionId!);
          this.lanes.set(lane, []);
          this.tally.errors.push(e);
        })
        .finally(() => {
          this.queued.delete(v.versionId!);
          this.running.delete(lane);
          this.pump();
          if (!this.busy()) for (const wake of this.idleWaiters) wake();
        });
    }
  }

  private async copy(v: Version): Promise<void> {
    const { src, dst, copyLog } = this;
    const got = await withRetry(`get ${v.key}`, () => src.client.send(new GetObjectCommand({ Bucket: src.bucket, Key: v.key, VersionId: v.versionId })));
    // A copy: ours (its metadata), or one MinIO's own bucket replication made (prod's native mode).
    if (got.Metadata?.[COPY_OF_META] || got.ReplicationStatus === "REPLICA") {
      (got.Body as Readable).destroy();
      this.notBack(v);
      writeJson(this.stateFile, [...this.done]);
      return;
    }
    const lock = got.ObjectLockMode && got.ObjectLockRetainUntilDate ? { mode: got.ObjectLockMode, retainUntil: got.ObjectLockRetainUntilDate } : undefined;
    const put = await dst.upload(v.key, got.Body as Readable, lock, got.ContentType, { [COPY_OF_META]: `${src.endpoint}/${src.bucket}?versionId=${v.versionId}` });
    this.done.add(v.versionId!);
    this.tally.copied++;
    writeJson(this.stateFile, [...this.done]);
    if (copyLog) {
      this.unrecorded.push({ endpoint: dst.endpoint, region: copyLog.region, bucket: dst.bucket, key: v.key, sourceBucket: src.bucket, sourceVersionId: v.versionId!, copyVersionId: put.versionId ?? null, sourceCreatedAt: v.lastModified, sizeBytes: v.size });
      writeJson(this.recordsFile, this.unrecorded);
      if (!this.catalogDown) {
        await this.record().catch((e: Error) => {
          this.catalogDown = e.message;
        });
      }
    }
  }

  /** Resolves once nothing is queued or being copied, or after `ms` (undefined: no limit). */
  private idle(ms?: number): Promise<void> {
    if (!this.busy()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const wake = () => {
        clearTimeout(timer);
        this.idleWaiters.delete(wake);
        resolve();
      };
      this.idleWaiters.add(wake);
      if (ms !== undefined) timer = setTimeout(wake, ms);
    });
  }

  /** Stops queuing: the copies under way finish (and are remembered), the rest wait for the next replicator. */
  async stop(): Promise<void> {
    for (const q of this.lanes.values()) for (const v of q.splice(0)) this.queued.delete(v.versionId!);
    await this.idle();
  }

  /**
   * One pass: lists the source, queues what is new, and waits until everything is copied, or for
   * `maxSeconds` at most (the copies under way go on; the next pass does not queue them again).
   * Throws the first copy error of the pass once it ends.
   */
  async pass(track: PassTrack = {}, maxSeconds?: number): Promise<PassResult> {
    await this.load();
    const { src, copyLog } = this;
    Object.assign(this.tally, { copied: 0, recorded: 0, notSentBack: 0, errors: [] });
    this.catalogDown = undefined;
    // Copies a catalog outage left unrecorded go in first.
    await this.record().catch((e: Error) => log(`replicate: ${this.unrecorded.length} copy record(s) still wait for the catalog (${e.message})`));
    const pending: Version[] = [];
    const services = new Set<string>();
    for await (const v of src.listVersions("")) {
      const svc = serviceOf(v.key);
      if (svc) services.add(svc);
      if (v.versionId && !this.done.has(v.versionId)) pending.push(v);
    }
    track.listed = { services, pending, done: this.done };
    pending.sort((a, b) => (a.lastModified?.getTime() ?? 0) - (b.lastModified?.getTime() ?? 0));
    backlog.set(pending.length);
    lag.set(pending.length ? (Date.now() - (pending[0]!.lastModified?.getTime() ?? Date.now())) / 1000 : 0);
    // Versions that are copies made into this bucket: the catalog knows them (copies made before
    // they carried their metadata included); without it, each copy's own metadata says so (copy()).
    const fresh = pending.filter((v) => !this.queued.has(v.versionId!));
    const copies = copyLog
      ? await cat.copiesAmong(copyLog.db, src.endpoint, src.bucket, fresh.map((v) => v.versionId!)).catch((e: Error) => {
          this.catalogDown = e.message;
          return new Set<string>();
        })
      : new Set<string>();
    // Known copies are settled first: a pass that fails midway does not count them as its backlog.
    for (const v of fresh) if (copies.has(v.versionId!)) this.notBack(v);
    if (this.tally.notSentBack) writeJson(this.stateFile, [...this.done]);
    await track.onListed?.();
    for (const v of fresh) {
      if (this.done.has(v.versionId!)) continue;
      const lane = serviceOf(v.key) ?? "";
      if (!this.lanes.has(lane)) this.lanes.set(lane, []);
      this.lanes.get(lane)!.push(v);
      this.queued.add(v.versionId!);
    }
    this.pump();
    await this.idle(maxSeconds === undefined ? undefined : maxSeconds * 1000);
    if (this.catalogDown) log(`replicate: the catalog did not take ${this.unrecorded.length} copy record(s) (${this.catalogDown}); they are kept in ${this.recordsFile} and recorded on a later pass`);
    const left = pending.filter((v) => !this.done.has(v.versionId!)).length;
    const oldest = pending.find((v) => !this.done.has(v.versionId!));
    backlog.set(left);
    lag.set(oldest ? (Date.now() - (oldest.lastModified?.getTime() ?? Date.now())) / 1000 : 0);
    const { copied: n, recorded, notSentBack, errors } = this.tally;
    copied.set(n);
    if (errors.length) throw errors[0]!;
    return { copied: n, skipped: this.done.size - n - notSentBack, recorded, copiesNotSentBack: notSentBack, left };
  }
}

export async function replicate(s: Settings, once: boolean): Promise<number> {
  const src = Storage.fromSettings(s);
  const endpoint = s.require("replicaEndpoint");
  const dst = new Storage(s.require("replicaBucket"), endpoint, s.get("replicaRegion") ?? "us-east-1", s.secret("replicaAccessKey"), s.secret("replicaSecretKey"), retryWithin(s.int("s3RetrySeconds")));
  if (src.bucket === dst.bucket && endpoint === s.get("s3Endpoint")) throw new ConfigError(`${AGENT_ENV.replicaBucket} is the source bucket: give the DR bucket.`);
  const interval = s.int("replicationIntervalSeconds", 30);
  // Without a catalog the copies are made but not recorded: a restore from the replica region then
  // cannot translate version ids, so every stack that declares a replicator gives it the catalog.
  const copyLog = s.get("catalogHost") ? { db: await cat.connectCatalog(s), region: s.get("replicaRegion") ?? "us-east-1" } : undefined;
  let lost: string | undefined;
  const lostP = copyLog ? cat.catalogLost(copyLog.db).then((why) => void (lost = why)) : new Promise<void>(() => undefined);
  if (!copyLog) log(`replicate: no catalog configured (${AGENT_ENV.catalogHost}): copies are not recorded, so restores from the replica region cannot find them by version`);
  if (!once) log(`replicate ${src.bucket} (${src.endpoint}) -> ${dst.bucket} (${endpoint}): a pass every ${interval} s; /healthz and /metrics on :${s.metricsPort}`);
  let lastOk = Date.now();
  let lastError: string | undefined;
  const srv = once
    ? undefined
    : httpServer(s.metricsPort, () => ({ ok: Date.now() - lastOk < Math.max(300, interval * 5) * 1000, detail: { source: src.bucket, replica: dst.bucket, lastError } }));
  let reportError = "";
  const pair = { sourceEndpoint: src.endpoint, sourceBucket: src.bucket, endpoint: dst.endpoint, bucket: dst.bucket };
  /**
   * What a pass starts from and what it left go to the catalog (status and the health job judge
   * it against the RPO); while a pass copies, its reports are kept fresh, so a long pass does not
   * read as a replicator gone silent. A catalog that does not answer within 15 s only loses the
   * report: copying goes on.
   */
  const catalogCall = async (what: (db: cat.Db) => Promise<void>) => {
    if (!copyLog) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([what(copyLog.db), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error("no answer within 15 s")), 15_000)))]);
      if (reportError) log(`replicate: the catalog takes the backlog reports again`);
      reportError = "";
    } catch (e) {
      const msg = (e as Error & { code?: string }).code === "42P01" ? "the catalog has no replication_status table (migration 012): run 'kryonix-dr migrate'" : (e as Error).message;
      if (msg !== reportError) log(`replicate: the backlog report was not recorded (${msg}); copying goes on, status and the health job cannot judge this replica's lag meanwhile`);
      reportError = msg;
    } finally {
      clearTimeout(timer);
    }
  };
  const report = (track: PassTrack, error: string | null) =>
    catalogCall((db) => cat.reportReplication(db, { ...pair, region: copyLog!.region, reportIntervalSeconds: interval, pending: backlogOf(track), error }));
  // Stopped on purpose (scaled to 0 when the dr stack is no longer active, removed, replaced): its
  // backlog rows are withdrawn, so nothing is judged of a replication that no longer runs.
  if (!once) {
    let stopping = false;
    const stop = async (sig: string) => {
      if (stopping) return;
      stopping = true;
      await catalogCall((db) => cat.withdrawReplication(db, pair));
      log(`replicate ${src.bucket} -> ${dst.bucket}: stopped (${sig}); its backlog reports are withdrawn from the catalog${reportError ? ` (not recorded: ${reportError})` : ""}`);
      process.exit(0);
    };
    for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => void stop(sig));
  }
  const rep = new Replicator(s, src, dst, copyLog);
  for (;;) {
    const track: PassTrack = {};
    let left = 0;
    track.onListed = () => report(track, null);
    const alive = setInterval(() => void catalogCall((db) => cat.touchReplication(db, pair)), Math.max(5, interval) * 1000);
    try {
      // A pass ends on time: a copy that outlasts it (a large RDB) goes on, and the next pass, at
      // once, queues what was written meanwhile in the other lanes.
      const r = await rep.pass(track, once ? undefined : interval).finally(() => clearInterval(alive));
      left = r.left;
      await report(track, null);
      lastOk = Date.now();
      if (lastError) log(`replicate ${src.bucket} -> ${dst.bucket}: passes succeed again`);
      lastError = undefined;
      if (r.copied > 0 || r.recorded > 0 || r.copiesNotSentBack > 0 || once) {
        log(
          `replicate ${src.bucket} -> ${dst.bucket}: copied ${r.copied} new version(s)${copyLog ? `, recorded ${r.recorded} in the catalog` : ""}` +
            (r.copiesNotSentBack ? `; ${r.copiesNotSentBack} version(s) are copies from ${dst.endpoint} or another region, not sent back` : "") +
            (r.left ? `; ${r.left} still being copied or queued` : ""),
        );
      }
    } catch (e) {
      const msg = (e as Error).message;
      await report(track, msg);
      if (once) throw e;
      // Said once per distinct reason (a region that is down fails every pass the same way).
      if (msg !== lastError) log(`replicate: ${msg} (retrying every ${interval} s; said again only when the reason changes)`);
      lastError = msg;
    }
    if (once || lost !== undefined) {
      // Decided now: ending the connection below sets `lost` too.
      const code = lost === undefined ? 0 : cat.EXIT_CATALOG_LOST;
      // Copies under way finish and are remembered (their records wait in the state dir).
      await rep.stop();
      if (lost !== undefined) log(`replicate: lost its catalog connection (${lost}); exiting so that Swarm starts the replicator again with a new one (copy records the catalog has not taken are kept in its state dir and recorded by the next one)`);
      srv?.close();
      if (copyLog) await cat.closeCatalog(copyLog.db);
      return code;
    }
    // A lost catalog ends the wait: the replicator exits at once rather than after a pass it cannot record.
    if (left === 0) await Promise.race([new Promise((r) => setTimeout(r, interval * 1000)), lostP]);
  }
}
