/**
 * Redis: the seed's approach against ours.
 *
 *   seed: redis-cli --rdb file, gzip, then upload (the seed's backupRedis; its shell script's
 *         BGSAVE and copy of dump.rdb give the same file)
 *   ours: kdr-agent backup --type full (redis-cli --rdb - streamed | zstd | age | S3 multipart,
 *         SHA-256 on the way, manifest, catalog row)
 * Both get the RDB the same way (a replica's sync; the server runs with our image's
 * repl-diskless-sync-delay 0, so it forks at once), so the difference is what happens to the bytes after.
 *
 * Each restore ends with a fresh redis-server that has loaded the RDB and answers, holding every
 * key with its value (a sha1 chained over the values, compared with the source's). An incremental
 * of Redis is a whole RDB by design (README), so none is measured here.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { AGENT_ENV } from "../contract/index.js";
import { agentWorld } from "../test/support/s3.js";
import { freePort } from "../test/support/tmp-postgres.js";
import { startTmpRedis } from "../test/support/tmp-redis.js";
import { agentCommand, backupOurs, measureLimits, MiB, newRow, runAgent, s3, timed, timedAsync, type Row, type SizeResult } from "./measure.js";

const SEED = "seed: redis-cli --rdb, gzip, then upload";
const OURS = "ours: RDB, zstd, age, S3 multipart";
/** The same backup once `kdr-agent verify` passed it (the verify cron's work): its restore does not parse the RDB again. */
const OURS_VERIFIED = "ours: the same backup, verified, restored";
const VALUE_BYTES = 1000;
const CHUNK = 20_000;
const FILL = "for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do local v = {} for k = 1, 25 do v[k] = redis.sha1hex(i .. '-' .. k) end redis.call('SET', 'k:' .. i, table.concat(v)) end return 1";
const CHAIN = "local h = ARGV[1] for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do local v = redis.call('GET', 'k:' .. i) if not v then return {i, h} end h = redis.sha1hex(h .. v) end return {0, h}";

function cli(port: number, password: string | undefined, args: string[]): string {
  const r = spawnSync("redis-cli", ["-p", String(port), "--no-auth-warning", ...args], { encoding: "utf8", env: { ...process.env, ...(password ? { REDISCLI_AUTH: password } : {}) }, maxBuffer: 64 * MiB });
  if (r.status !== 0 || /^(ERR|LOADING|NOAUTH)/m.test(r.stdout)) throw new Error(`redis-cli ${args[0]} failed: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
  return r.stdout.trim();
}

/** Key count and a sha1 chained over every value in key order. */
function fingerprint(port: number, password?: string): string {
  let h = "";
  for (let from = 1; ; from += CHUNK) {
    const [stop, next] = cli(port, password, ["EVAL", CHAIN, "0", h, String(from), String(from + CHUNK - 1)]).split("\n");
    h = next ?? "";
    if (stop !== "0") return `${Number(stop) - 1} keys, sha1 ${h}`;
  }
}

/** Starts redis-server on `dir/dump.rdb` and waits until it has loaded it and answers; returns its stop. */
async function serve(dir: string): Promise<{ port: number; stop: () => void }> {
  const port = await freePort();
  const p = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  for (let i = 0; i < 6000; i++) {
    const r = spawnSync("redis-cli", ["-p", String(port), "PING"], { encoding: "utf8" });
    if (r.stdout.trim() === "PONG") return { port, stop: () => p.kill("SIGKILL") };
    if (p.exitCode !== null) throw new Error(`redis-server exited (${p.exitCode}) loading ${dir}/dump.rdb`);
    await new Promise((res) => setTimeout(res, 100));
  }
  p.kill("SIGKILL");
  throw new Error(`redis-server did not load ${dir}/dump.rdb within 600 s`);
}

export async function benchRedis(sizes: number[], runs: number, say: (m: string) => void): Promise<SizeResult[]> {
  const w = await agentWorld("kdrbench-redis");
  // The server as our Redis image runs it (images/redis/entrypoint.sh): a replica's sync, which
  // both pipelines ask for, forks at once instead of after Redis's default 5 s wait for more replicas.
  const redis = await startTmpRedis({ settings: { "repl-diskless-sync-delay": "0" } });
  const work = path.join(w.root, "bench");
  mkdirSync(work, { recursive: true });
  const results: SizeResult[] = [];
  try {
    writeFileSync(path.join(w.secretDir, "kdr-target-password"), `${redis.password}\n`, { mode: 0o600 });
    const agent = agentCommand(w.env("bench-redis", { [AGENT_ENV.engine]: "redis", [AGENT_ENV.targetHost]: redis.host, [AGENT_ENV.targetPort]: String(redis.port) }));
    const store = s3(w.bucket.client, w.bucket.bucket);
    const auth = `REDISCLI_AUTH='${redis.password}' redis-cli -p ${redis.port} --no-auth-warning`;
    let keys = 0;
    for (const target of sizes) {
      const want = Math.ceil((target * MiB) / VALUE_BYTES);
      for (let from = keys + 1; from <= want; from += CHUNK) cli(redis.port, redis.password, ["EVAL", FILL, "0", String(from), String(Math.min(want, from + CHUNK - 1))]);
      keys = Math.max(keys, want);
      const expected = fingerprint(redis.port, redis.password);
      const rdb = path.join(work, "limits.rdb");
      timed(`${auth} --rdb ${rdb} > /dev/null`);
      const dataBytes = statSync(rdb).size;
      say(`redis ${target} MiB: ${keys} keys, RDB ${(dataBytes / MiB).toFixed(0)} MiB`);
      const limits = await measureLimits(`cat ${rdb}`, store, `limits/redis-${target}.zst`, path.join(work, "limits.zst"));
      rmSync(rdb);
      /**
       * A restore's end: a redis-server that has loaded `dir/dump.rdb` (its wall seconds since
       * `t0`); then every value checked, and the server, the directory and the measured objects gone.
       */
      const loadAndCheck = async (dir: string, t0: bigint, what: string, measured?: string): Promise<number> => {
        const t1 = process.hrtime.bigint();
        const srv = await serve(dir);
        const t2 = process.hrtime.bigint();
        const wall = Number(t2 - t0) / 1e9;
        say(`redis ${target} MiB: ${what} ${(Number(t1 - t0) / 1e9).toFixed(1)} s, then redis-server's load of the RDB ${(Number(t2 - t1) / 1e9).toFixed(1)} s`);
        try {
          const got = fingerprint(srv.port);
          if (got !== expected) throw new Error(`${what} gave back ${got}, not ${expected}: the benchmark stops rather than time a broken restore.`);
        } finally {
          srv.stop();
          rmSync(dir, { recursive: true, force: true });
          if (measured) await store.drop(measured);
        }
        return wall;
      };

      const table: Record<string, Row> = { [SEED]: newRow(), [OURS]: newRow(), [OURS_VERIFIED]: newRow() };
      for (let run = 1; run <= runs; run++) {
        say(`redis ${target} MiB: run ${run}/${runs}`);
        {
          const r = table[SEED]!;
          const file = path.join(work, "dump.rdb");
          const dump = timed(`${auth} --rdb ${file} > /dev/null && gzip ${file}`);
          const up = await timedAsync(() => store.upload(`seed/redis-${target}-${run}.rdb.gz`, `${file}.gz`));
          r.backupWall.push(dump.wall + up.wall);
          r.backupCpu.push(dump.cpu + up.cpu);
          r.stored.push(up.value);
          rmSync(`${file}.gz`);
          const dir = path.join(work, `seed-restore-${run}`);
          mkdirSync(dir);
          const t0 = process.hrtime.bigint();
          const dl = await timedAsync(() => store.download(`seed/redis-${target}-${run}.rdb.gz`, path.join(dir, "dump.rdb.gz")));
          const unz = timed(`gunzip ${path.join(dir, "dump.rdb.gz")}`);
          r.restoreWall.push(await loadAndCheck(dir, t0, "the seed's download and gunzip", `seed/redis-${target}-${run}.rdb.gz`));
          r.restoreCpu.push(dl.cpu + unz.cpu);
        }
        {
          const sum = backupOurs(agent, table[OURS]!);
          /** `kdr-agent restore` of our backup into a new directory, timed to a loaded, checked server, into `r`. */
          const restoreOurs = async (r: Row, dir: string, what: string, measured?: string) => {
            const t0 = process.hrtime.bigint();
            const rest = runAgent(agent, `restore --target ${path.join(work, dir)} --backup-id ${sum.backupId}`);
            r.restoreWall.push(await loadAndCheck(path.join(work, dir), t0, what, measured));
            r.restoreCpu.push(rest.cpu);
            r.restorePeak.push(rest.peakBytes);
          };
          await restoreOurs(table[OURS]!, `restore-${run}`, "our restore (download, age, zstd, redis-check-rdb)");
          // Not timed: the verify cron's work, which a restore finds done for all but the newest snapshots.
          runAgent(agent, `verify --backup-id ${sum.backupId}`, false);
          await restoreOurs(table[OURS_VERIFIED]!, `restore-verified-${run}`, "our restore of it verified (download, age, zstd)", `full/bench-redis/${sum.backupId}/`);
        }
      }
      results.push({
        engine: "redis",
        targetMiB: target,
        dataBytes,
        what: `${keys} keys of ${VALUE_BYTES} bytes, as the RDB`,
        limits,
        pipelines: table,
        restoreNote: "Each restore ends with a fresh redis-server that has loaded the RDB and answers; every key and value is checked (a sha1 chained over the values).",
      });
    }
    return results;
  } finally {
    await redis.stop();
    await w.close();
  }
}
