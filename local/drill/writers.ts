/**
 * Continuous sample writes into the protected services, each acknowledged by the service itself,
 * and read-back of what a recovered service holds. Every write records the service's own clock
 * at the write (`writtenAt`) and the host time its acknowledgement arrived (`ackedAt`): the
 * commit lies between the two, which is what lets the verification say for certain whether a
 * row belongs before or after a recovery point.
 *
 * The services live on an overlay network the host cannot route to; the writes go through
 * `docker exec` into the service's own task container with its own client (psql, redis-cli, sh).
 */
import type { ServiceSpec } from "../../stacks/config.js";
import { dockerExec } from "./docker.js";

/** How the drill writes to and reads back a service: "tsdb" is a Prometheus backed up by TSDB snapshot. */
export type DrillEngine = "postgres" | "redis" | "volume" | "tsdb";

/**
 * A Prometheus backed up by TSDB snapshot keeps only its TSDB: a file written into its volume is
 * not in the backup, by design. Its acknowledged writes are its own samples: a self-scrape
 * (`up{job="prometheus"}`) that a query has returned is in the TSDB head, so in any snapshot after.
 */
export const drillEngine = (s: Pick<ServiceSpec, "engine" | "tsdbSnapshot">): DrillEngine => (s.tsdbSnapshot ? "tsdb" : s.engine);

const PROMQL_SELF = 'up{job="prometheus"}';
/** Sample timestamps (ms) that promtool printed (`=> 1 @[1764662400.123]`, one or many). */
const sampleTimes = (out: string): number[] => [...out.matchAll(/@\[(\d+(?:\.\d+)?)\]/g)].map((m) => Math.round(Number(m[1]) * 1000));

export interface Ack {
  key: string;
  /** Service clock at the write, ms since the epoch. */
  writtenAt: number;
  /** Host clock when the acknowledgement arrived, ms since the epoch. */
  ackedAt: number;
  /** volume: SHA-256 of the file written. */
  sha256?: string;
}

export interface WriterStats {
  engine: DrillEngine;
  acks: Ack[];
  failures: number;
  lastError?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The pace of retries after a failed write (a failover's time is measured to within it). */
const FAILED_WRITE_PAUSE_MS = 1000;
const PSQL = ["psql", "-X", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-At"];
/**
 * psql in the service's own container (its socket), or, with `host`, from a client container over
 * the network (a failover drill writes through the stable name); as the superuser the container
 * was created with (POSTGRES_USER: the prod stack's is `replicator`), and the password, when the
 * container has it, from its secret file, never from argv.
 */
export const psqlArgv = (host?: string) => [
  "sh",
  "-c",
  'PGUSER="${POSTGRES_USER:-postgres}"; export PGUSER; if [ -r /run/secrets/kdr-target-password ]; then PGPASSWORD="$(cat /run/secrets/kdr-target-password)"; export PGPASSWORD; fi; exec psql "$@"',
  "psql",
  ...(host ? ["-h", host] : []),
  ...PSQL.slice(1),
];
// A password, if the service has one, comes from its Swarm secret file, never from argv.
const REDIS = ["sh", "-c", 'if [ -r /run/secrets/kdr-target-password ]; then REDISCLI_AUTH="$(cat /run/secrets/kdr-target-password)"; export REDISCLI_AUTH; fi; exec redis-cli --no-auth-warning "$@"', "redis-cli"];
export const redisArgv = (host?: string) => [...REDIS, ...(host ? ["-h", host] : [])];
export const FILES_DIR = "drill";

/** Prepares the service for writes (PostgreSQL: the table). */
export async function prepare(engine: DrillEngine, container: string, host?: string): Promise<void> {
  if (engine !== "postgres") return;
  const r = await dockerExec(container, [
    ...psqlArgv(host),
    "-c",
    "CREATE TABLE IF NOT EXISTS drill_events (id bigserial PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT clock_timestamp(), payload text NOT NULL)",
  ]);
  if (r.code !== 0) throw new Error(`could not create drill_events in PostgreSQL: ${r.stderr.trim()}`);
}

/** One acknowledged write, or an error. */
export async function writeOne(engine: DrillEngine, container: string, runId: string, n: number, dataPath: string, host?: string): Promise<Ack> {
  if (engine === "postgres") {
    const r = await dockerExec(container, [
      ...psqlArgv(host),
      "-c",
      `INSERT INTO drill_events (payload) VALUES ('${runId}-${n}') RETURNING id, (extract(epoch FROM written_at) * 1000000)::bigint`,
    ]);
    const ackedAt = Date.now();
    const m = /^(\d+)\|(\d+)$/m.exec(r.stdout);
    if (r.code !== 0 || !m) throw new Error(`INSERT failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
    return { key: m[1]!, writtenAt: Number(m[2]) / 1000, ackedAt };
  }
  if (engine === "redis") {
    const key = `drill:${runId}:${n}`;
    const script = "local t = redis.call('TIME'); redis.call('SET', KEYS[1], ARGV[1] .. '@' .. t[1] .. '.' .. t[2]); return t";
    const r = await dockerExec(container, [...redisArgv(host), "EVAL", script, "1", key, `${runId}-${n}`]);
    const ackedAt = Date.now();
    const [sec, usec] = r.stdout.trim().split(/\s+/).map(Number);
    if (r.code !== 0 || !Number.isFinite(sec) || !Number.isFinite(usec)) throw new Error(`SET failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
    return { key, writtenAt: sec! * 1000 + usec! / 1000, ackedAt };
  }
  if (engine === "tsdb") {
    // A range selector gives the raw samples with their own timestamps (an instant vector would
    // carry the query's evaluation time instead): the newest is the latest self-scrape.
    const r = await dockerExec(container, ["promtool", "query", "instant", "http://localhost:9090", `${PROMQL_SELF}[30s]`]);
    const ackedAt = Date.now();
    const times = sampleTimes(r.stdout);
    const t = times.length ? Math.max(...times) : undefined;
    if (r.code !== 0 || t === undefined) throw new Error(`query of ${PROMQL_SELF} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim() || "no sample yet"}`);
    return { key: String(t), writtenAt: t, ackedAt };
  }
  const name = `${runId}-${n}.bin`;
  // Written to a temporary name and renamed, so a backup never sees half a file under its name.
  const r = await dockerExec(container, [
    "sh",
    "-c",
    'set -e; d="$1/$2"; mkdir -p "$d"; head -c 4096 /dev/urandom > "$d/.$3.tmp"; mv "$d/.$3.tmp" "$d/$3"; date +%s%N; sha256sum "$d/$3"',
    "sh",
    dataPath,
    FILES_DIR,
    name,
  ]);
  const ackedAt = Date.now();
  const m = /^(\d{19})\s*\n([0-9a-f]{64})\s/m.exec(r.stdout);
  if (r.code !== 0 || !m) throw new Error(`file write failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  return { key: name, writtenAt: Number(BigInt(m[1]!) / 1000n) / 1000, ackedAt, sha256: m[2]! };
}

/** Writes until stopped; failures are counted (a write that failed was never acknowledged). */
export class Writer {
  readonly stats: WriterStats;
  private stopped = false;
  private loop?: Promise<void>;

  constructor(
    readonly engine: DrillEngine,
    private readonly container: string,
    private readonly runId: string,
    private readonly dataPath: string,
    private readonly pauseMs = 300,
    /** Write from `container` (a client) to this host name, not into the container's own server. */
    private readonly host?: string,
  ) {
    this.stats = { engine, acks: [], failures: 0 };
  }

  start(): void {
    this.loop = (async () => {
      for (let n = 1; !this.stopped; n++) {
        try {
          const ack = await writeOne(this.engine, this.container, this.runId, n, this.dataPath, this.host);
          // A TSDB answers with the same sample until its next scrape: one ack per sample.
          if (this.stats.acks.at(-1)?.key !== ack.key) this.stats.acks.push(ack);
        } catch (e) {
          this.stats.failures++;
          this.stats.lastError = (e as Error).message;
          // While the service is away every write fails at once, and each is a `docker exec`: at
          // the write pace that load on this one machine would slow the very failover being timed.
          await sleep(Math.max(0, FAILED_WRITE_PAUSE_MS - this.pauseMs));
        }
        await sleep(this.pauseMs);
      }
    })();
  }

  /** Stops after the write in flight; resolves once it is acknowledged or failed. */
  async stop(): Promise<WriterStats> {
    this.stopped = true;
    await this.loop;
    return this.stats;
  }
}

/** What a (recovered) service holds: key -> content (PostgreSQL: id -> payload; files: name -> SHA-256). */
export async function readBack(engine: DrillEngine, container: string, runId: string, dataPath: string, host?: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (engine === "postgres") {
    const r = await dockerExec(container, [...psqlArgv(host), "-c", `SELECT id, payload FROM drill_events WHERE payload LIKE '${runId}-%'`], 60_000);
    if (r.code !== 0) throw new Error(`reading drill_events failed: ${r.stderr.trim()}`);
    for (const line of r.stdout.split("\n")) {
      const [id, payload] = line.split("|");
      if (id && payload) out.set(id, payload);
    }
    return out;
  }
  if (engine === "redis") {
    const script = "local ks = redis.call('KEYS', ARGV[1]); local out = {}; for _, k in ipairs(ks) do out[#out + 1] = k; out[#out + 1] = redis.call('GET', k) end; return out";
    const r = await dockerExec(container, [...redisArgv(host), "EVAL", script, "0", `drill:${runId}:*`], 60_000);
    if (r.code !== 0) throw new Error(`reading drill keys failed: ${r.stderr.trim()}`);
    const lines = r.stdout.split("\n").filter((l) => l !== "");
    for (let i = 0; i + 1 < lines.length; i += 2) out.set(lines[i]!, lines[i + 1]!);
    return out;
  }
  if (engine === "tsdb") {
    // Every raw sample of the last day: a range selector returns them with their own timestamps.
    const r = await dockerExec(container, ["promtool", "query", "instant", "http://localhost:9090", `${PROMQL_SELF}[1d]`], 60_000);
    if (r.code !== 0) throw new Error(`reading ${PROMQL_SELF} back failed: ${r.stderr.trim()}`);
    for (const t of sampleTimes(r.stdout)) out.set(String(t), "1");
    return out;
  }
  const r = await dockerExec(container, ["sh", "-c", 'cd "$1/$2" 2>/dev/null || exit 0; for f in *.bin; do [ -e "$f" ] && sha256sum "$f"; done; true', "sh", dataPath, FILES_DIR], 60_000);
  if (r.code !== 0) throw new Error(`reading drill files failed: ${r.stderr.trim()}`);
  for (const line of r.stdout.split("\n")) {
    const m = /^([0-9a-f]{64})\s+\*?(.+)$/.exec(line.trim());
    if (m) out.set(m[2]!, m[1]!);
  }
  return out;
}
