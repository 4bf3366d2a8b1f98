/**
 * `kryonix-dr drill --data-size <MiB>`: each protected service holds that much data before the
 * drill's writes begin, so the recovery time is measured against a realistic size, and the data
 * comes back whole: a fingerprint of it is taken in the service before the disaster and again in
 * the recovered one.
 *
 * - PostgreSQL: table drill_seed, rows of about 1 KB of hex text (md5s: compresses about 2:1, as
 *   text columns do), grown until the table (with its index) holds the size; fingerprint: row
 *   count and md5 over every row's md5 in id order (one string_agg: 32 bytes a row stays under
 *   PostgreSQL's 1 GB value limit up to the CLI's cap of 16 GiB).
 * - Redis: keys drill-seed:<n>, 1000-byte values of sha1 hex; fingerprint: key count and a sha1
 *   chained over every value in key order.
 * - Volume: <dataPath>/drill-seed: half the size in 16 MiB files, half in 16 KiB files, random
 *   bytes (media and uploads do not compress); fingerprint: sha256sum of every file, sorted,
 *   hashed.
 * - A Prometheus backed up by TSDB snapshot is not seeded: its backup is its own samples only.
 *
 * Everything runs with the service's own client in its own container (writers.ts), as the writes do.
 */
import { dockerExec } from "./docker.js";
import { psqlArgv, redisArgv, type DrillEngine } from "./writers.js";

const MiB = 2 ** 20;
/** Each `docker exec` adds this much (a chunk is a few seconds of work on 2 cores). */
const PG_CHUNK_ROWS = 50_000;
const REDIS_CHUNK_KEYS = 20_000;
const REDIS_VALUE_BYTES = 1000;
export const SEED_DIR = "drill-seed";

export interface Seeded {
  /** What the service holds of the seed, as it measures it (table + index, used memory, file bytes). */
  bytes: number;
  /** What the recovered service must give back, exactly. */
  fingerprint: string;
  seconds: number;
}

async function run(container: string, argv: string[], what: string, timeoutMs = 600_000): Promise<string> {
  const r = await dockerExec(container, argv, timeoutMs);
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(0, 500)}`);
  return r.stdout.trim();
}

/** Fills the service with `mib` MiB of seed data; returns its size and fingerprint. */
export async function seed(engine: DrillEngine, container: string, mib: number, dataPath: string, progress: (line: string) => void): Promise<Seeded | undefined> {
  const t0 = Date.now();
  const want = mib * MiB;
  if (engine === "tsdb") return undefined;
  if (engine === "postgres") {
    const sql = (q: string) => run(container, [...psqlArgv(), "-c", q], "seeding PostgreSQL");
    await sql("CREATE TABLE IF NOT EXISTS drill_seed (id bigint PRIMARY KEY, payload text NOT NULL)");
    const size = async () => Number(await sql("SELECT pg_total_relation_size('drill_seed')"));
    for (let have = await size(); have < want; have = await size()) {
      const from = Number(await sql("SELECT coalesce(max(id), 0) + 1 FROM drill_seed"));
      // A row takes about 1050 bytes with its index entry: the last chunk only what is missing.
      const rows = Math.min(PG_CHUNK_ROWS, Math.ceil((want - have) / 1000));
      await sql(`INSERT INTO drill_seed SELECT g, (SELECT string_agg(md5(g::text || '-' || k), '') FROM generate_series(1, 30) k) FROM generate_series(${from}, ${from + rows - 1}) g`);
      progress(`postgres: ${((await size()) / MiB).toFixed(0)} of ${mib} MiB`);
    }
  } else if (engine === "redis") {
    const fill =
      "for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do local v = {} for k = 1, 25 do v[k] = redis.sha1hex(i .. '-' .. k) end redis.call('SET', 'drill-seed:' .. i, table.concat(v)) end return 1";
    const keys = Math.ceil(want / REDIS_VALUE_BYTES);
    for (let from = 1; from <= keys; from += REDIS_CHUNK_KEYS) {
      const to = Math.min(keys, from + REDIS_CHUNK_KEYS - 1);
      await run(container, [...redisArgv(), "EVAL", fill, "0", String(from), String(to)], "seeding Redis");
      if (to === keys || (to / REDIS_CHUNK_KEYS) % 10 === 0) progress(`redis: ${to} of ${keys} keys (${((to * REDIS_VALUE_BYTES) / MiB).toFixed(0)} MiB)`);
    }
  } else {
    // Random bytes do not compress: half in a few large files, half in many small ones.
    const large = Math.max(1, Math.floor(mib / 2 / 16));
    const smallBytes = Math.max(MiB, want - large * 16 * MiB);
    await run(
      container,
      ["sh", "-c", 'set -e; d="$1/$2"; mkdir -p "$d/large" "$d/small"; i=1; while [ $i -le "$3" ]; do head -c 16M /dev/urandom > "$d/large/f$i"; i=$((i+1)); done; cd "$d/small"; head -c "$4" /dev/urandom | split -b 16384 -a 5 - s', "sh", dataPath, SEED_DIR, String(large), String(smallBytes)],
      "seeding the volume",
    );
    progress(`volume: ${large} files of 16 MiB and ${Math.ceil(smallBytes / 16384)} of 16 KiB`);
  }
  const f = await fingerprint(engine, container, dataPath);
  return { ...f, seconds: (Date.now() - t0) / 1000 };
}

/** The seed's size and fingerprint as the (recovered) service holds it. */
export async function fingerprint(engine: DrillEngine, container: string, dataPath: string): Promise<{ bytes: number; fingerprint: string }> {
  if (engine === "postgres") {
    const out = await run(container, [...psqlArgv(), "-F", " ", "-c", "SELECT pg_total_relation_size('drill_seed'), count(*), md5(string_agg(md5(payload), '' ORDER BY id)) FROM drill_seed"], "reading drill_seed");
    const [bytes, rows, md5] = out.split(" ");
    return { bytes: Number(bytes), fingerprint: `${rows} rows, md5 ${md5}` };
  }
  if (engine === "redis") {
    // Chained over every value in key order, a chunk per EVAL (the chain passed along): a missing key stops it.
    const chain =
      "local h = ARGV[1] for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do local v = redis.call('GET', 'drill-seed:' .. i) if not v then return {i, h} end h = redis.sha1hex(h .. v) end return {0, h}";
    let h = "";
    let n = 0;
    for (let from = 1; ; from += REDIS_CHUNK_KEYS) {
      const [stop, next] = (await run(container, [...redisArgv(), "EVAL", chain, "0", h, String(from), String(from + REDIS_CHUNK_KEYS - 1)], "reading the Redis seed")).split("\n");
      h = next ?? "";
      if (stop !== "0") {
        n = Number(stop) - 1;
        break;
      }
    }
    const mem = await run(container, [...redisArgv(), "INFO", "memory"], "reading Redis's memory");
    const used = Number(/^used_memory:(\d+)/m.exec(mem)?.[1] ?? 0);
    return { bytes: used, fingerprint: `${n} keys, sha1 ${h}` };
  }
  const out = await run(
    container,
    ["sh", "-c", 'set -e; cd "$1/$2"; n=$(find . -type f | wc -l); b=$(du -sb . | cut -f1); h=$(find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d" " -f1); echo "$b $n $h"', "sh", dataPath, SEED_DIR],
    "reading the volume's seed",
  );
  const [bytes, files, h] = out.split(" ");
  return { bytes: Number(bytes), fingerprint: `${files} files, sha256 ${h}` };
}
