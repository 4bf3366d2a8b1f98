/**
 * The artifact pipeline: raw bytes -> zstd -> age -> S3, streamed, with SHA-256 and byte counts
 * taken on the fly on both sides (so the compression ratio is measured: stored/raw).
 * A stream only ends cleanly when every process in it exited 0; otherwise the upload is
 * aborted, so a failed producer can never leave a truncated object that looks complete.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { PassThrough, Readable, Transform, Writable, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { ConfigError } from "../config.js";
import { Progress } from "./progress.js";
import type { Lock, ObjectRef, Storage } from "./s3.js";

export interface SealedArtifact extends ObjectRef {
  /** Artifact name inside the backup (e.g. base.tar). */
  name: string;
  rawBytes: number;
  /** Absent for a source sealed `compressed` (its raw bytes never pass through the agent). */
  rawSha256?: string;
  storedBytes: number;
  /** SHA-256 of the stored (compressed, encrypted) object: what verify and restore re-check. */
  sha256: string;
}

/**
 * Why a tool got SIGKILL that the agent did not send: the container's cgroup (v2) counts the
 * kernel's out-of-memory kills in memory.events, against memory.max. A run at 1 GiB of files with a
 * 256 MiB sidecar had restic killed so, with nothing but "killed by SIGKILL" to tell.
 */
export function oomHint(events: string | undefined, max: string | undefined): string {
  const kills = Number(/^oom_kill (\d+)$/m.exec(events ?? "")?.[1] ?? 0);
  if (!kills) return "";
  const limited = /^\d+$/.test((max ?? "").trim());
  const what = limited ? `The container reached its memory limit (${Math.round(Number(max) / 1048576)} MiB)` : "The machine ran out of memory";
  return ` ${what}: the kernel killed it (${kills} out-of-memory kill(s) in this container so far). Raise kryonix-dr:sidecar.memoryMiB (or the service's own limits) and deploy again.`;
}

const readCgroup = (f: string): string | undefined => {
  try {
    return readFileSync(`/sys/fs/cgroup/${f}`, "utf8");
  } catch {
    return undefined;
  }
};

/**
 * Runs a child whose exit is awaited; rejects with its stderr when it fails. `chatter` matches
 * stderr lines that are progress, not errors (redis-cli's "sending REPLCONF ...", pg_basebackup's
 * counts): they are handed to `onChatter` and never kept, so they neither reach the error, which
 * reaches people in notices, nor push out of it what the tool said first.
 */
export function spawnTool(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; stdin?: "pipe" | "ignore" | Readable; cwd?: string; chatter?: RegExp; onChatter?: (line: string) => void } = {}) {
  const child = spawn(cmd, args, { stdio: [opts.stdin ?? "pipe", "pipe", "pipe"], env: opts.env ?? process.env, cwd: opts.cwd });
  // A stream handed over as stdin must be another child's stdout (a stream with an OS handle;
  // spawn refuses others). It is now the child's alone: the agent's
  // copy of that pipe is closed, so the writer sees EPIPE if the child dies, and never waits on us.
  if (opts.stdin instanceof Readable) opts.stdin.destroy();
  let stderr = "";
  let partial = "";
  const keep = (line: string) => {
    if (opts.chatter?.test(line)) return opts.onChatter?.(line);
    stderr += line + "\n";
    if (stderr.length > 20000) stderr = stderr.slice(-10000);
  };
  child.stderr!.on("data", (d: Buffer) => {
    const lines = (partial + d.toString()).split(/\r?\n|\r/);
    partial = lines.pop() ?? "";
    lines.forEach(keep);
  });
  // 'end' comes before 'close' (what exited waits for): the last line without a newline is kept.
  child.stderr!.on("end", () => {
    if (partial) keep(partial);
    partial = "";
  });
  const told = () => stderr.trim().slice(-1500);
  const exited = new Promise<void>((resolve, reject) => {
    child.on("error", (e) =>
      reject((e as NodeJS.ErrnoException).code === "ENOENT" ? new Error(`${cmd} is not installed (not found on PATH): install it in the agent image.`) : e),
    );
    child.on("close", (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} ${signal ? `was killed by ${signal}` : `exited ${code}`}: ${told()}${signal === "SIGKILL" ? oomHint(readCgroup("memory.events"), readCgroup("memory.max")) : ""}`)),
    );
  });
  exited.catch(() => undefined);
  return { child, exited, stderr: told };
}

/**
 * How an archive from the object store is unpacked (a PostgreSQL base backup): GNU tar, as the
 * agent image ships it, which strips a leading '/', skips a member whose name holds '..' (and
 * exits non-zero), and makes a symlink that points away only after every file, so nothing in
 * the archive lands outside `dir`. The agent-image test feeds it such an archive.
 * Records of 1 MiB (`-b 2048`), read whole from the pipe (`-B`): tar then writes each file in
 * 1 MiB calls, not 10 KiB ones; a 3.6 GB base unpacks in 8.7-10.1 s instead of 11.1-12.1 s
 * with 1.3-3.2 s less system CPU (docs/benchmarks.md).
 */
export const UNTAR_ARGS = ["-x", "-i", "-b", "2048", "-B", "-f", "-"] as const;
export const untar = (dir: string) => spawnTool("tar", [...UNTAR_ARGS, "-C", dir]);

/**
 * Streams an archive object (openAndRestore: its SHA-256s checked; a base sealed `compressed`:
 * unpackDirect) into tar, unpacking it in `dir`. The error is the cause: tar's own (a full disk, a member it refused) when all the stream
 * saw was its input closing; else the stream's (a checksum, the key, the object missing or
 * unreachable), tar being stopped as a stream that fails early never ends its input.
 */
export async function openIntoDir(o: Omit<OpenOptions, "sink">, dir: string): Promise<void> {
  if (!o.ref.rawSha256) return unpackDirect(o, dir);
  const tar = untar(dir);
  const streamed = openAndRestore({ ...o, sink: tar.child.stdin! }).catch((e: unknown) => {
    if (tar.child.exitCode === null) tar.child.kill("SIGTERM");
    throw e;
  });
  throwCause(...(await Promise.allSettled([streamed, tar.exited])));
}

/**
 * Of a stream into a tool and the tool's exit, throws the cause: the tool's error when it is a
 * full disk or all the stream saw was the tool closing its input; else the stream's.
 */
export function throwCause(fed: PromiseSettledResult<unknown>, tool: PromiseSettledResult<unknown>): void {
  const inputClosed = (e: unknown) => ["EPIPE", "ERR_STREAM_PREMATURE_CLOSE", "ERR_STREAM_DESTROYED"].includes((e as NodeJS.ErrnoException).code ?? "");
  if (tool.status === "rejected" && (diskFull(tool.reason) || fed.status === "fulfilled" || inputClosed(fed.reason))) throw tool.reason;
  if (fed.status === "rejected") throw fed.reason;
}

/**
 * Counts bytes and hashes them (unless `hash` is false: nothing to compare the digest with);
 * optionally waits for `gates` before signalling the end.
 */
export class Meter extends Transform {
  bytes = 0;
  private readonly h;
  digest = "";
  constructor(
    private readonly gates: Promise<unknown>[] = [],
    private readonly progress?: Progress,
    hash = true,
  ) {
    super();
    this.h = hash ? createHash("sha256") : undefined;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.h?.update(chunk);
    this.progress?.add(chunk.length);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    this.digest = this.h?.digest("hex") ?? "";
    Promise.all(this.gates).then(
      () => cb(),
      (e: unknown) => cb(e as Error),
    );
  }
}

/** Short, stable id of an age recipient (public key): safe to store in the catalog. */
export function keyId(recipient: string): string {
  return "age-" + createHash("sha256").update(recipient.trim()).digest("hex").slice(0, 16);
}

/**
 * Public keys of an age identity file, one per private key it holds, computed by age-keygen (the
 * tool, not our own crypto). During a key rotation the file holds the new key and the old ones.
 */
export function recipientsOfIdentity(identityFile: string): string[] {
  const r = spawnSync("age-keygen", ["-y", identityFile], { encoding: "utf8" });
  if (r.error) throw new Error(`age-keygen is not installed: install the 'age' package in the agent image.`);
  if (r.status !== 0) {
    throw new ConfigError(`the age identity in ${identityFile} is not a valid age private key (${r.stderr.trim()}): put the AGE-SECRET-KEY-1... line made by age-keygen into the kdr-age-identity secret.`);
  }
  return r.stdout.split("\n").map((l) => l.trim()).filter(Boolean);
}

export function checkRecipient(recipient: string, file: string): void {
  if (!/^age1[0-9a-z]{50,}$/.test(recipient.trim())) {
    throw new ConfigError(`the age recipient in ${file} is not an age public key: put the 'age1...' line printed by 'age-keygen -y' into the kdr-age-recipient secret (never the private key).`);
  }
}

export interface SealOptions {
  storage: Storage;
  key: string;
  name: string;
  source: Readable;
  /** Path of the recipient (public key) file, handed to `age -R`. */
  recipientFile: string;
  lock?: Lock;
  /** Promises that must resolve (e.g. the producer's exit) before the object may complete. */
  producers?: Promise<unknown>[];
  progress?: Progress;
  /**
   * `source` is a child's stdout that is already zstd at ZSTD_LEVEL (pg_basebackup's own
   * client-side zstd, with a worker per CPU the agent may use): it goes straight into age, OS pipe only, the raw
   * bytes never in the agent and never hashed (the stored object's SHA-256, age's authentication,
   * zstd's frame checksum and pg_verifybackup's manifest guard them). `rawBytes`, called once
   * the producers exited, is the producer's own count of what it compressed. Not zstd in a child
   * of its own: the pipe of raw bytes between them (and dd counting it) cost a 4 GiB base about
   * 12 s of CPU and 6-9 s of wall on two cores (docs/benchmarks.md, 2026-12-07).
   */
  compressed?: { rawBytes: () => number };
}

/**
 * zstd's level for every artifact sealed here (bases, WAL, RDBs, dumps). Level 1, not
 * zstd's default 3: on the bench's PostgreSQL base it compresses 1.6 times as fast for 1% fewer
 * bytes (on binaries about 11% more), decompresses a fifth faster; at level 3 the backup of a
 * large base was bound by zstd on two cores shared with the S3 server (docs/benchmarks.md, 2026-12-07).
 */
export const ZSTD_LEVEL = 1;

/**
 * zstd's worker threads here (zstd -T, pg_basebackup's workers=): the CPUs this container may use,
 * its cgroup's CPU quota (Swarm's resources.limits; cgroup v2 cpu.max, v1 cpu.cfs_quota_us) rounded
 * up, never more than the CPUs it can run on, at least 1. Not zstd's -T0, which counts the host's
 * cores: a sidecar limited to half a CPU on a 64-core host would start 64 workers inside a 512 MiB
 * limit, and have them throttled in turn (zstd -1 -T64 peaks at 154 MB resident, -T2 at 20 MB:
 * about 2.2 MB a worker, measured here on 300 MB of text, 2026-12-07).
 */
export function compressionWorkers(read: (file: string) => string | undefined = readCgroup, cpus = availableParallelism()): number {
  const quota = (() => {
    const v2 = read("cpu.max");
    if (v2 !== undefined) {
      const [q, period] = v2.trim().split(/\s+/);
      return q === "max" ? Infinity : Number(q) / Number(period);
    }
    const q = Number(read("cpu/cpu.cfs_quota_us") ?? -1);
    return q > 0 ? q / Number(read("cpu/cpu.cfs_period_us")) : Infinity;
  })();
  const n = Math.min(cpus, Math.ceil(quota));
  return Number.isFinite(n) && n >= 1 ? n : 1;
}

/** Streams `source` through zstd and age into S3. */
export async function sealAndUpload(o: SealOptions): Promise<SealedArtifact> {
  const zstd = o.compressed ? undefined : spawnTool("zstd", ["-q", "-c", `-${ZSTD_LEVEL}`, `-T${compressionWorkers()}`]);
  // zstd (or the producer) writes straight into age through an OS pipe: those bytes never pass through the agent.
  const age = spawnTool("age", ["-e", "-R", o.recipientFile], { stdin: zstd ? zstd.child.stdout! : o.source });
  const raw = zstd ? new Meter([], o.progress) : undefined;
  const sourceDone = zstd ? pipeline(o.source, raw!, zstd.child.stdin!) : Promise.resolve();
  sourceDone.catch(() => undefined);
  const tools = [age.exited, ...(zstd ? [zstd.exited] : [])];
  const stored = new Meter([sourceDone, ...tools, ...(o.producers ?? [])]);
  const out = new PassThrough();
  const storedDone = pipeline(age.child.stdout!, stored, out);
  storedDone.catch(() => undefined);
  const kill = () => {
    for (const c of [zstd?.child, age.child]) if (c && c.exitCode === null) c.kill("SIGTERM");
  };
  const upload = o.storage.upload(o.key, out, o.lock);
  upload.catch(() => undefined);
  try {
    const [ref] = await Promise.all([upload, storedDone, sourceDone, ...tools, ...(o.producers ?? [])]);
    const rawBytes = raw ? raw.bytes : o.compressed!.rawBytes();
    return { ...ref, name: o.name, rawBytes, rawSha256: raw?.digest, storedBytes: stored.bytes, sha256: stored.digest };
  } catch (e) {
    kill();
    o.source.destroy();
    // When the upload gives up it stops reading, and the stages feeding it only report that they
    // were aborted; the upload's own error (once its cleanup is done) names the cause.
    if ((e as Error).name === "AbortError") {
      const cause = await upload.then(
        () => undefined,
        (x: unknown) => x,
      );
      if (cause) throw cause;
    }
    throw e;
  }
}

/** Downloads an object and checks its SHA-256 without decrypting (needs no key). */
export async function checkStoredSha(storage: Storage, ref: { key: string; versionId?: string | null; sha256: string; storedBytes?: number }, label: string): Promise<void> {
  const { body, size } = await storage.get(ref.key, ref.versionId ?? undefined);
  const m = new Meter([], new Progress(`check ${label}`, size ?? ref.storedBytes));
  await pipeline(body, m, new Writable({ write: (_c, _e, cb) => cb() }));
  if (m.digest !== ref.sha256) throw storedShaMismatch(storage, ref, label, m.digest);
}

/** A stored object whose SHA-256 is not the catalog's: the same words from a check, a verify and a restore. */
function storedShaMismatch(storage: Storage, ref: { key: string; versionId?: string | null; sha256: string }, label: string, digest: string): IntegrityError {
  return new IntegrityError(
    `${label}: SHA-256 of s3://${storage.bucket}/${ref.key}${ref.versionId ? ` (version ${ref.versionId})` : ""} is ${digest}, the catalog recorded ${ref.sha256}: the stored object is corrupt or was replaced. Do not use it; restore from another backup.`,
  );
}

export class IntegrityError extends Error {}

/** The fix for an error that is a full local disk (ENOSPC, a quota, SQLite's SQLITE_FULL), or undefined. */
export function diskFull(e: unknown, stateDir = "its state directory"): string | undefined {
  const err = e as { message?: string; code?: string };
  if (["ENOSPC", "EDQUOT"].includes(err.code ?? "") || /No space left on device|Disk quota exceeded|ENOSPC|database or disk is full/.test(err.message ?? "")) {
    return `the local disk is full: free space in the agent's state directory (${stateDir}), or give its volume more room`;
  }
  return undefined;
}

/** How a tool dies when the next one in its pipe is gone: a consequence, never the cause. */
const BROKEN_PIPE = /SIGPIPE|broken pipe|connection reset by peer|EPIPE/i;

/**
 * openIntoDir for a base sealed `compressed` (no raw SHA-256 to check): age -d into zstd -d into tar,
 * OS pipes only; the progress counts the stored bytes as they download (no relay counts the
 * decompressed ones: one more copy of every byte cost about 1 s of wall per 3.5 GB, docs/benchmarks.md).
 * The error is the cause: a full disk (tar's) first, then the stored stream's (a checksum, the
 * download), then age's word on the key, then the first tool in the pipe that did not merely die
 * of the next one's exit (a member tar refused, a damaged frame zstd found).
 */
async function unpackDirect(o: Omit<OpenOptions, "sink">, dir: string): Promise<void> {
  const d = await decrypting(o, () => undefined, new Progress(`restore ${o.label}, downloaded`, o.ref.storedBytes));
  const untarred = spawnTool("tar", [...UNTAR_ARGS, "-C", dir], { stdin: d.zstd.child.stdout! });
  // A full disk says nothing of the object: the rest of it is not downloaded just to be hashed.
  untarred.exited.catch((e: unknown) => {
    if (diskFull(e)) d.body.destroy();
  });
  const [sha, age, zstd, tar] = await Promise.allSettled([d.shaOk, d.ageOk, d.zstd.exited, untarred.exited]);
  // In pipe order: the first that failed of its own accord is the cause.
  const failed = [age, zstd, tar].flatMap((r) => (r.status === "rejected" ? [r.reason as Error] : []));
  if (!failed.length && sha.status === "fulfilled") return;
  if (tar.status === "rejected" && diskFull(tar.reason)) throw tar.reason;
  if (sha.status === "rejected") throw sha.reason;
  throw failed.find((e) => e instanceof ConfigError) ?? failed.find((e) => !BROKEN_PIPE.test(e.message)) ?? failed[0];
}

export interface OpenOptions {
  storage: Storage;
  ref: { key: string; versionId?: string | null; sha256: string; storedBytes?: number; rawSha256?: string; rawBytes?: number };
  identityFile: string;
  label: string;
  /** Where the decrypted, decompressed bytes go. */
  sink: Writable;
}

/**
 * The object's download into age -d and zstd -d (OS pipe between them), its stored SHA-256
 * checked as it streams (and counted into `progress`, when given); `nothing` runs when the object
 * cannot even be opened.
 */
async function decrypting(o: Omit<OpenOptions, "sink">, nothing: () => void, progress?: Progress) {
  const { body } = await o.storage.get(o.ref.key, o.ref.versionId ?? undefined).catch((e: unknown) => {
    nothing();
    throw e;
  });
  const age = spawnTool("age", ["-d", "-i", o.identityFile]);
  // age writes straight into zstd through an OS pipe: those bytes never pass through the agent.
  const zstd = spawnTool("zstd", ["-q", "-d", "-c"], { stdin: age.child.stdout! });
  const stored = new Meter([], progress);
  // The stored stream is read to its end even when age stops early (a damaged chunk fails its
  // MAC): its SHA-256 is then complete, and says that the object, not this machine, is at fault.
  const inDone = pipeline(body, stored, childSink(age.child.stdin!));
  // Awaited through the gates below; a failure that ends the main pipeline first must not
  // surface as an unhandled rejection.
  inDone.catch(() => undefined);
  const shaOk = inDone.then(() => {
    if (stored.digest !== o.ref.sha256) throw storedShaMismatch(o.storage, o.ref, o.label, stored.digest);
  });
  const ageOk = age.exited.catch((e: Error) => {
    if (/no identity matched/.test(e.message)) {
      throw new ConfigError(`${o.label}: the age identity in ${o.identityFile} does not match the key this backup was encrypted with: mount the kdr-age-identity secret whose public key is the backup's recipient.`);
    }
    throw e;
  });
  ageOk.catch(() => undefined);
  shaOk.catch(() => undefined);
  return { body, age, zstd, shaOk, ageOk };
}

/**
 * Streams an object back through age -d and zstd -d into `sink`, checking the stored SHA-256
 * and the raw SHA-256 on the way; the sink only gets an end when both matched.
 */
export async function openAndRestore(o: OpenOptions): Promise<{ rawBytes: number }> {
  const { body, age, zstd, shaOk, ageOk } = await decrypting(o, () => o.sink.destroy());
  // A base sealed `compressed` has no raw SHA-256: its bytes are counted, not hashed for nothing.
  const raw = new Meter([shaOk, ageOk, zstd.exited], new Progress(`restore ${o.label}`, o.ref.rawBytes), Boolean(o.ref.rawSha256));
  // Which side failed first: the sink (a full disk, tar gone) says nothing of the object, and then
  // the rest of it is not downloaded just to be hashed.
  let first: "sink" | "stream" | undefined;
  o.sink.once("error", () => (first ??= "sink"));
  // A child's input closes without an error when the child exits and no write was in flight.
  o.sink.once("close", () => {
    if (!o.sink.writableFinished) first ??= "sink";
  });
  raw.once("error", () => (first ??= "stream"));
  try {
    await pipeline(zstd.child.stdout!, raw, o.sink);
  } catch (e) {
    for (const c of [age.child, zstd.child]) if (c.exitCode === null) c.kill("SIGTERM");
    if (first === "sink") {
      body.destroy();
      throw e;
    }
    // The root cause over the broken pipe it produced downstream: the stored stream's (a checksum
    // mismatch, or the download broke off) first, as a damaged header also makes age say that no
    // identity matched (a key that is not the backup's was refused before any download:
    // identityFor); then age's word on the key; then what the pipeline saw.
    const failure = (p: Promise<unknown>) => p.then(() => undefined, (x: unknown) => x);
    const [ageError, shaError] = await Promise.all([failure(ageOk), failure(shaOk)]);
    if (shaError) throw shaError;
    throw ageError instanceof ConfigError ? ageError : e;
  }
  if (o.ref.rawSha256 && raw.digest !== o.ref.rawSha256) {
    throw new IntegrityError(`${o.label}: decrypted content has SHA-256 ${raw.digest}, expected ${o.ref.rawSha256}.`);
  }
  return { rawBytes: raw.bytes };
}

/**
 * Feeds a child's stdin, but when the child stops reading early (it found what it needed, or
 * failed) the rest is still consumed, so the stream's checksums are always complete; the
 * child's exit status is what says whether its check passed.
 */
export function childSink(stdin: Writable): Writable {
  let broken = false;
  let pending: (() => void) | undefined;
  const release = () => {
    const p = pending;
    pending = undefined;
    p?.();
  };
  const fail = () => {
    broken = true;
    release();
  };
  // A child that exits closes the pipe: 'close' (without a write in flight there is no EPIPE).
  stdin.on("error", fail);
  stdin.on("close", fail);
  return new Writable({
    // Failed from upstream (the download broke): the child gets the end of its input, not a wait.
    destroy(err, cb) {
      if (err) stdin.destroy();
      cb(err);
    },
    write(chunk: Buffer, _enc, cb) {
      if (broken || stdin.destroyed) return cb();
      if (stdin.write(chunk)) return cb();
      pending = () => cb();
      stdin.once("drain", release);
    },
    final(cb) {
      if (broken || stdin.destroyed) return cb();
      let done = false;
      const once = () => {
        if (!done) {
          done = true;
          cb();
        }
      };
      stdin.once("finish", once);
      stdin.once("close", once);
      stdin.end();
    },
  });
}

/** A Writable that discards everything (for integrity-only passes). */
export const devNull = () => new Writable({ write: (_c, _e, cb) => cb() });

export type { ChildProcess };
