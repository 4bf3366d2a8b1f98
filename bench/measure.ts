/**
 * What every engine's benchmark measures with: timings of shell commands (wall, CPU of the whole
 * process tree, peak memory), the plain S3 client the seed's pipelines upload with, the machine's
 * limits on a given stream of bytes, and the table a size's results are shown in.
 */
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectVersionsCommand, type S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { spawnSync } from "node:child_process";
import { createReadStream, createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
// The agent's zstd level: the machine's zstd limit (zstd -T0, every core of this host) is measured at the same.
import { ZSTD_LEVEL } from "../agent/storage/pipeline.js";

export const MiB = 2 ** 20;
const REPO = path.resolve(__dirname, "..");

/**
 * The agent as it ships: the bundle the agent image runs (scripts/build-agent.mjs), built once per
 * bench run from this tree. Not `tsx agent/cli.ts`, which compiles TypeScript at every start
 * (about half a second more per command, and the compiler's memory in the peak).
 */
let bundle: string | undefined;
function agentBundle(): string {
  if (bundle) return bundle;
  const out = path.join(mkdtempSync(path.join(tmpdir(), "kdrbench-agent-")), "agent.cjs");
  const r = spawnSync(process.execPath, [path.join(REPO, "scripts", "build-agent.mjs"), out], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`building the agent bundle failed (node scripts/build-agent.mjs): ${r.stderr.trim()}`);
  return (bundle = out);
}

export interface Timed {
  wall: number;
  cpu: number;
}

/** Runs a shell command under bash's `time`; wall and user+sys CPU of it and its children. */
export function timed(cmd: string, env: NodeJS.ProcessEnv = process.env): Timed & { stdout: string } {
  const r = spawnSync("bash", ["-c", `set -o pipefail; TIMEFORMAT='KDRTIME %R %U %S'; time ( ${cmd} )`], { env, encoding: "utf8", maxBuffer: 256 * 1024 * 1024 });
  const m = /KDRTIME ([\d.]+) ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`'${cmd}' failed (exit ${r.status}):\n${r.stderr.slice(-3000)}`);
  return { wall: Number(m[1]), cpu: Number(m[2]) + Number(m[3]), stdout: r.stdout };
}

/** `timed` with GNU time around the command: also the largest resident set (bytes) in its tree. */
export function timedWithPeak(cmd: string): Timed & { stdout: string; peakBytes: number } {
  const peakFile = `/tmp/kdrbench-peak-${process.pid}`;
  const t = timed(`/usr/bin/time -f %M -o ${peakFile} ${cmd}`);
  const kib = Number(readFileSync(peakFile, "utf8").trim().split("\n").pop());
  rmSync(peakFile, { force: true });
  if (!Number.isFinite(kib) || kib <= 0) throw new Error(`GNU time reported no peak memory for '${cmd}'`);
  return { ...t, peakBytes: kib * 1024 };
}

export async function timedAsync<T>(fn: () => Promise<T>): Promise<Timed & { value: T }> {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const value = await fn();
  const c = process.cpuUsage(c0);
  return { wall: Number(process.hrtime.bigint() - t0) / 1e9, cpu: (c.user + c.system) / 1e6, value };
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** What the agent image sets in every agent's environment (its Dockerfile's ENV lines). */
export function imageEnv(): Record<string, string> {
  const file = path.join(REPO, "images", "agent", "Dockerfile");
  const env = Object.fromEntries([...readFileSync(file, "utf8").matchAll(/^ENV (\w+)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
  if (!env.GLIBC_TUNABLES) throw new Error(`${file} sets no GLIBC_TUNABLES: the bench runs the agent as the image does, and reads the image's environment there.`);
  return env;
}

/** The agent's CLI with exactly these settings, and the image's environment, in its environment (nothing inherited). */
export function agentCommand(env: Record<string, string>): string {
  const envArgs = Object.entries({ ...imageEnv(), ...env }).map(([k, v]) => `${k}='${v}'`).join(" ");
  return `env -i ${envArgs} ${process.execPath} ${agentBundle()}`;
}

/** The seed's upload: one file through the SDK's managed upload, as a plain client does it. */
export function s3(client: S3Client, bucket: string) {
  return {
    async upload(key: string, file: string): Promise<number> {
      const up = new Upload({ client, params: { Bucket: bucket, Key: key, Body: createReadStream(file) }, partSize: 8 * MiB, queueSize: 2 });
      await up.done();
      return (await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).ContentLength ?? 0;
    },
    async download(key: string, file: string): Promise<void> {
      const o = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      await pipeline(o.Body as Readable, createWriteStream(file));
    },
    /** What the bucket holds under `prefix` (every version), in bytes. */
    async bytesUnder(prefix: string): Promise<number> {
      let n = 0;
      let keyMarker: string | undefined;
      let versionMarker: string | undefined;
      for (;;) {
        const res = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: prefix, KeyMarker: keyMarker, VersionIdMarker: versionMarker }));
        for (const v of res.Versions ?? []) n += v.Size ?? 0;
        if (!res.IsTruncated) return n;
        keyMarker = res.NextKeyMarker;
        versionMarker = res.NextVersionIdMarker;
      }
    },
    /**
     * Deletes every version under `prefix` once it has been measured, so the runs do not pile
     * up in the local RGW (an 8 GiB in-memory store, when it was one, was filled by a few runs at 1 GiB).
     */
    async drop(prefix: string): Promise<void> {
      for (;;) {
        const res = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: prefix }));
        const all = [...(res.Versions ?? []), ...(res.DeleteMarkers ?? [])];
        if (all.length === 0) return;
        for (const v of all) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: v.Key!, VersionId: v.VersionId, BypassGovernanceRetention: true }));
      }
    },
  };
}

/** Bytes per second of the machine alone on the same bytes (source bytes; put/get: compressed bytes). */
export interface Limits {
  read: number;
  zstdCompress: number;
  zstdDecompress: number;
  s3Put: number;
  s3Get: number;
  /** Writing the bytes to the disk a restore writes to, flushed (dd conv=fsync): the median of `writes`. */
  write: number;
  /** Each of the three flushed writes (a VM's disk swings by half between one and the next). */
  writes: number[];
  compressedRatio: number;
}

/**
 * The machine's limits on the bytes `source` (a shell command) writes to stdout: reading them,
 * zstd -T0 at the agent's level both ways, the S3 server's put and get of the compressed bytes,
 * and writing them to `scratch`'s disk (the one restores write to) and flushing them.
 */
export async function measureLimits(source: string, store: ReturnType<typeof s3>, key: string, scratch: string): Promise<Limits> {
  const bytes = Number(timed(`${source} | wc -c`).stdout.trim());
  const read = timed(`${source} | cat > /dev/null`);
  // One flushed write of 4 GiB measured 325-732 MiB/s across this VM's runs: the median of three.
  const writes = [1, 2, 3].map(() => {
    const w = timed(`${source} | dd of=${scratch} bs=1M conv=fsync status=none`);
    rmSync(scratch);
    return bytes / w.wall;
  });
  const z = timed(`${source} | zstd -q -T0 -${ZSTD_LEVEL} -c > ${scratch}`);
  const zBytes = statSync(scratch).size;
  const unz = timed(`zstd -q -d -c ${scratch} > /dev/null`);
  const put = await timedAsync(() => store.upload(key, scratch));
  rmSync(scratch);
  const get = await timedAsync(() => store.download(key, scratch));
  rmSync(scratch);
  await store.drop(key);
  return { read: bytes / read.wall, zstdCompress: bytes / z.wall, zstdDecompress: bytes / unz.wall, s3Put: zBytes / put.wall, s3Get: zBytes / get.wall, write: median(writes), writes, compressedRatio: zBytes / bytes };
}

export interface Row {
  backupWall: number[];
  backupCpu: number[];
  stored: number[];
  restoreWall: number[];
  restoreCpu: number[];
  backupPeak: number[];
  restorePeak: number[];
}

export const newRow = (): Row => ({ backupWall: [], backupCpu: [], stored: [], restoreWall: [], restoreCpu: [], backupPeak: [], restorePeak: [] });

/**
 * Runs the agent (`agentCommand`) with `args`, timed (with its peak memory unless `peak` is
 * false); its progress goes to a file, whose end is in the error when the run fails.
 */
export function runAgent(agent: string, args: string, peak = true): Timed & { stdout: string; peakBytes: number } {
  const err = `/tmp/kdrbench-agent-${process.pid}.log`;
  try {
    const cmd = `${agent} ${args} 2>${err}`;
    return peak ? timedWithPeak(cmd) : { ...timed(cmd), peakBytes: 0 };
  } catch (e) {
    const said = existsSync(err) ? readFileSync(err, "utf8").slice(-3000) : "";
    throw new Error(`${(e as Error).message}\nthe agent said:\n${said}`);
  } finally {
    rmSync(err, { force: true });
  }
}

/** One `kdr-agent backup --type full` into row `r`: its wall, CPU, peak memory and stored bytes. */
export function backupOurs(agent: string, r: Row, opts: { extra?: string } = {}): { backupId: string; storedBytes: number } {
  const b = runAgent(agent, `backup --type full --json ${opts.extra ?? ""}`);
  const sum = JSON.parse(b.stdout) as { storedBytes: number; backupId: string };
  r.backupWall.push(b.wall);
  r.backupCpu.push(b.cpu);
  r.stored.push(sum.storedBytes);
  r.backupPeak.push(b.peakBytes);
  return sum;
}

export interface SizeResult {
  engine: "postgres" | "redis" | "volume";
  targetMiB: number;
  /** The data as the service holds it (PostgreSQL: all databases on disk; Redis: the RDB; volume: the files). */
  dataBytes: number;
  /** What the data is, in a few words (rows, keys, files). */
  what: string;
  limits: Limits;
  pipelines: Record<string, Row>;
  /** After a 1% change; absent where an incremental is a whole copy (Redis). */
  incremental?: { change: string; storedBytes: number; fullStoredBytes: number };
  /** What the restore column includes, for this engine. */
  restoreNote: string;
}

/** One size's table: every pipeline against each of the seed's, and against the machine. */
export function renderSize(s: SizeResult, title: string): string[] {
  const mib = (b: number) => (b / MiB).toFixed(1);
  const f = (xs: number[], d = 1) => (xs.length ? median(xs).toFixed(d) : "-");
  const ratio = (a: number[], b: number[]) => (a.length && b.length ? (median(a) / median(b)).toFixed(2) : "-");
  const l = s.limits;
  // Source bytes per second each path can reach at most: the backup reads, compresses and puts
  // the compressed bytes; the restore gets them, decompresses and writes them to disk.
  const backupLimit = Math.min(l.read, l.zstdCompress, l.s3Put / l.compressedRatio);
  const restoreLimit = Math.min(l.zstdDecompress, l.s3Get / l.compressedRatio, l.write);
  const seeds = Object.keys(s.pipelines).filter((n) => n.startsWith("seed:"));
  const short = (n: string) => n.replace(/^seed: /, "").replace(/, then upload$/, "");
  const lines = [
    `### ${title}, ${mib(s.dataBytes)} MiB (${s.what})`,
    "",
    `Machine limits on these bytes: reading them ${mib(l.read)} MiB/s; zstd -T0 -${ZSTD_LEVEL} ${mib(l.zstdCompress)} MiB/s in, ${mib(l.zstdDecompress)} MiB/s out (compressed to ${(l.compressedRatio * 100).toFixed(0)}%); S3 put ${mib(l.s3Put)} MiB/s, get ${mib(l.s3Get)} MiB/s; writing them to disk, flushed, ${mib(l.write)} MiB/s (the median of ${l.writes.map(mib).join(", ")}). The slowest of these bounds our backup at ${mib(backupLimit)} MiB/s and our restore at ${mib(restoreLimit)} MiB/s of data (the restore's bound leaves out the service's own start); our rows show their rate as a share of it. ${s.restoreNote}`,
    "",
    `| pipeline | backup wall s | backup CPU s | stored MiB | restore wall s | ${seeds.map((n) => `backup vs ${short(n)} | restore vs ${short(n)}`).join(" | ")} | backup MiB/s (of limit) | restore MiB/s (of limit) | agent peak MiB (backup / restore) |`,
    `|---|---|---|---|---|${seeds.map(() => "---|---|").join("")}---|---|---|`,
  ];
  for (const [name, r] of Object.entries(s.pipelines)) {
    // Only our pipelines' path is the one the limits were measured on (read, zstd at the agent's level, S3).
    const ours = name.startsWith("ours:");
    const rate = (xs: number[], limit: number) => (xs.length ? `${mib(s.dataBytes / median(xs))}${ours ? ` (${((s.dataBytes / median(xs) / limit) * 100).toFixed(0)}%)` : ""}` : "-");
    const peak = r.backupPeak.length || r.restorePeak.length ? `${f(r.backupPeak.map((b) => b / MiB))} / ${f(r.restorePeak.map((b) => b / MiB))}` : "-";
    const vs = seeds.map((n) => `${ratio(r.backupWall, s.pipelines[n]!.backupWall)} | ${ratio(r.restoreWall, s.pipelines[n]!.restoreWall)}`).join(" | ");
    lines.push(`| ${name} | ${f(r.backupWall)} | ${f(r.backupCpu)} | ${f(r.stored.map((b) => b / MiB))} | ${f(r.restoreWall)} | ${vs} | ${rate(r.backupWall, backupLimit)} | ${rate(r.restoreWall, restoreLimit)} | ${peak} |`);
  }
  if (s.incremental) {
    const inc = s.incremental;
    lines.push("", `Incremental after ${inc.change}: ${mib(inc.storedBytes)} MiB stored, ${((inc.storedBytes / inc.fullStoredBytes) * 100).toFixed(1)}% of a full (${mib(inc.fullStoredBytes)} MiB).`);
  }
  return lines;
}
