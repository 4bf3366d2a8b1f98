/**
 * Benchmark: the seed's PostgreSQL backup pipeline against ours as the data grows, on the same
 * database, the same S3 server (the local RGW) and the same machine, in one run.
 *
 *   seed custom:  pg_dump --format=custom --compress=9 > file, then upload the file
 *   seed dumpall: pg_dumpall | gzip > file, then upload the file (the seed's "full" mode)
 *   ours:         kdr-agent backup --type full --no-logical (pg_basebackup tar | zstd | age |
 *                 S3 multipart, SHA-256 on the way, manifest, catalog row)
 *   ours+logical: the same plus the logical pg_dump the agent keeps beside the base by default
 *
 * and the restore of each into a fresh server (pg_restore / psql vs kdr-agent restore + start with
 * WAL replay). Ours gives back the whole cluster, the seed's custom dump one database: the restore
 * columns compare what each pipeline returns after a lost server, the question a DR plan asks.
 *
 * The database grows through the sizes given (MiB on disk, all databases), and at each size:
 * - the pipelines alternate, run after run; wall seconds, CPU seconds (user+sys of the whole
 *   process tree, from bash's `time`) and stored bytes are medians of --runs;
 * - our agent's peak memory (the largest resident set in its process tree, GNU time's %M);
 * - an incremental after a 1% change (the newest 1% of the rows updated, as recent orders change
 *   state), against the full's stored bytes;
 * - the machine's limits on the same bytes: reading the data directory (tar to a pipe), zstd -T0
 *   at the agent's level, and the S3 server's put and get rate with a plain client. A pipeline's
 *   throughput is shown as a fraction of the slowest limit its path goes through.
 * Every restore is counted row by row: a timing of a restore that lost data would be worthless.
 *
 * Run: npm run bench -- [--sizes 200,1024,4096] [--runs 3] [--out docs/benchmarks.md]
 *      [--json docs/benchmarks.json]; --quick is one small size, one run (the test suite runs it).
 * Needs `bash scripts/platform-up.sh`. Not a test: nothing here passes or fails on a time.
 */
import { GetObjectCommand, HeadObjectCommand } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { spawnSync } from "node:child_process";
import { createReadStream, createWriteStream, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parseArgs } from "node:util";
import { AGENT_ENV } from "../contract/index.js";
import { agentWorld, pgQuery, startRestored } from "../test/support/s3.js";
import { PG_BIN, startTmpPostgres } from "../test/support/tmp-postgres.js";

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "200,1024,4096" },
    runs: { type: "string", default: "3" },
    quick: { type: "boolean", default: false },
    out: { type: "string" },
    json: { type: "string" },
  },
});
const SIZES = (values.quick ? "32" : values.sizes!).split(",").map((x) => Number(x.trim()));
const RUNS = values.quick ? 1 : Number(values.runs);
if (!SIZES.length || SIZES.some((x) => !Number.isInteger(x) || x < 16) || !Number.isInteger(RUNS) || RUNS < 1) {
  throw new Error(`--sizes takes whole MiB of at least 16, comma-separated (got '${values.sizes}'), and --runs a whole number >= 1 (got '${values.runs}').`);
}
SIZES.sort((a, b) => a - b);
/** The agent compresses at zstd level 3 with -T0 (agent/storage/pipeline.ts): the limit uses the same. */
const AGENT_ZSTD_LEVEL = 3;
const MiB = 2 ** 20;

interface Timed {
  wall: number;
  cpu: number;
}

/** Runs a shell command under bash's `time`; wall and user+sys CPU of it and its children. */
function timed(cmd: string, env: NodeJS.ProcessEnv = process.env): Timed & { stdout: string } {
  const r = spawnSync("bash", ["-c", `set -o pipefail; TIMEFORMAT='KDRTIME %R %U %S'; time ( ${cmd} )`], { env, encoding: "utf8", maxBuffer: 256 * 1024 * 1024 });
  const m = /KDRTIME ([\d.]+) ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`'${cmd}' failed (exit ${r.status}):\n${r.stderr.slice(-3000)}`);
  return { wall: Number(m[1]), cpu: Number(m[2]) + Number(m[3]), stdout: r.stdout };
}

/** `timed` with GNU time around the command: also the largest resident set (bytes) in its tree. */
function timedWithPeak(cmd: string): Timed & { stdout: string; peakBytes: number } {
  const peakFile = `/tmp/kdrbench-peak-${process.pid}`;
  const t = timed(`/usr/bin/time -f %M -o ${peakFile} ${cmd}`);
  const kib = Number(readFileSync(peakFile, "utf8").trim().split("\n").pop());
  rmSync(peakFile, { force: true });
  if (!Number.isFinite(kib) || kib <= 0) throw new Error(`GNU time reported no peak memory for '${cmd}'`);
  return { ...t, peakBytes: kib * 1024 };
}

async function timedAsync<T>(fn: () => Promise<T>): Promise<Timed & { value: T }> {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const value = await fn();
  const c = process.cpuUsage(c0);
  return { wall: Number(process.hrtime.bigint() - t0) / 1e9, cpu: (c.user + c.system) / 1e6, value };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Row {
  backupWall: number[];
  backupCpu: number[];
  stored: number[];
  restoreWall: number[];
  restoreCpu: number[];
  backupPeak: number[];
  restorePeak: number[];
}
interface SizeResult {
  targetMiB: number;
  databaseBytes: number;
  rows: number;
  /** Bytes per second of the machine alone on these bytes (source bytes, except put/get: stored bytes). */
  limits: { readDataDir: number; zstdCompress: number; zstdDecompress: number; s3Put: number; s3Get: number; compressedRatio: number };
  pipelines: Record<string, Row>;
  incremental: { changedRows: number; storedBytes: number; fullStoredBytes: number };
}

const SEED_CUSTOM = "seed: pg_dump -Fc -Z9, then upload";
const SEED_DUMPALL = "seed: pg_dumpall, gzip, then upload";
const OURS_BASE = "ours: base, zstd, age, S3 multipart";
const OURS_DEFAULT = "ours: the same + logical pg_dump (default)";

async function main(): Promise<void> {
  // The AWS SDK's notice about Node versions, off as in the agent and the CLI.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const w = await agentWorld("kdrbench-pipeline");
  const primary = await startTmpPostgres({ settings: { max_wal_size: "4GB", checkpoint_timeout: "15min" } });
  const work = path.join(w.root, "bench");
  mkdirSync(work, { recursive: true });
  const results: SizeResult[] = [];
  const say = (m: string) => process.stderr.write(`bench: ${m}\n`);
  try {
    await pgQuery(primary.url, "CREATE ROLE kdr_backup LOGIN REPLICATION PASSWORD 'kdr-backup-pw'");
    await pgQuery(primary.url, "GRANT pg_read_all_data TO kdr_backup");
    await pgQuery(primary.url, "GRANT EXECUTE ON FUNCTION pg_switch_wal() TO kdr_backup");
    writeFileSync(path.join(w.secretDir, "kdr-target-password"), "kdr-backup-pw\n", { mode: 0o600 });
    await pgQuery(primary.url, "CREATE DATABASE app");
    // Mixed content that compresses like application data (ids, amounts, states, hex tokens,
    // JSON, timestamps), not pgbench's blank filler, with a secondary index.
    await pgQuery(
      primary.urlFor("app"),
      `CREATE TABLE orders (id bigserial PRIMARY KEY, customer int NOT NULL, amount numeric(12,2) NOT NULL, status text NOT NULL, token text NOT NULL,
                            payload jsonb NOT NULL, created timestamptz NOT NULL)`,
    );
    await pgQuery(primary.urlFor("app"), "CREATE INDEX orders_customer ON orders (customer, created)");
    const dbSize = async () => Number((await pgQuery<{ b: string }>(primary.url, "SELECT sum(pg_database_size(datname))::text AS b FROM pg_database"))[0]!.b);
    const rowCount = async () => Number((await pgQuery<{ n: string }>(primary.urlFor("app"), "SELECT count(*)::text AS n FROM orders"))[0]!.n);
    const env = w.env("bench-pg", {
      [AGENT_ENV.engine]: "postgres",
      [AGENT_ENV.targetHost]: primary.host,
      [AGENT_ENV.targetPort]: String(primary.port),
      [AGENT_ENV.targetUser]: "kdr_backup",
      [AGENT_ENV.walSwitchSeconds]: "2",
    });
    const envArgs = Object.entries(env).map(([k, v]) => `${k}='${v}'`).join(" ");
    const agent = `env -i ${envArgs} ${process.execPath} --import tsx ${path.resolve(__dirname, "../agent/cli.ts")}`;
    const upload = async (key: string, file: string) => {
      const up = new Upload({ client: w.bucket.client, params: { Bucket: w.bucket.bucket, Key: key, Body: createReadStream(file) }, partSize: 8 * MiB, queueSize: 2 });
      await up.done();
      return (await w.bucket.client.send(new HeadObjectCommand({ Bucket: w.bucket.bucket, Key: key }))).ContentLength ?? 0;
    };
    const download = async (key: string, file: string) => {
      const o = await w.bucket.client.send(new GetObjectCommand({ Bucket: w.bucket.bucket, Key: key }));
      await pipeline(o.Body as Readable, createWriteStream(file));
    };

    for (const target of SIZES) {
      // Grow to the size, 100k rows (about 28 MiB with the index) at a time.
      while ((await dbSize()) < target * MiB) {
        const from = (await rowCount()) + 1;
        await pgQuery(
          primary.urlFor("app"),
          `INSERT INTO orders (customer, amount, status, token, payload, created)
           SELECT (random() * 50000)::int, round((random() * 1000)::numeric, 2), (ARRAY['new','paid','shipped','returned'])[1 + (g % 4)],
                  md5(random()::text), jsonb_build_object('sku', 'SKU-' || (g % 5000), 'qty', 1 + g % 7, 'note', md5(g::text)),
                  now() - make_interval(secs => g)
           FROM generate_series(${from}, ${from + 99_999}) g`,
        );
      }
      // Hint bits and the visibility map set now, not by the first reader or autovacuum during a timing.
      await pgQuery(primary.urlFor("app"), "VACUUM (ANALYZE) orders");
      await pgQuery(primary.urlFor("app"), "CHECKPOINT");
      const rows = await rowCount();
      const databaseBytes = await dbSize();
      say(`${target} MiB: ${rows} rows, ${(databaseBytes / MiB).toFixed(0)} MiB on disk`);
      const expectRows = async (url: string, what: string) => {
        const [c] = await pgQuery<{ n: string }>(url, "SELECT count(*)::text AS n FROM orders");
        if (Number(c!.n) !== rows) throw new Error(`${what} gave back ${c!.n} of ${rows} rows: the benchmark stops rather than time a broken restore.`);
      };

      // The machine alone on the same bytes. The server is live: tar's exit 1 (a file changed as
      // it read, as the checkpointer writes) is no error here, as it is none for a base backup.
      const tar = `{ tar -cf - -C ${primary.dataDir} --warning=no-file-changed . || [ $? -eq 1 ]; }`;
      const tarBytes = Number(timed(`${tar} | wc -c`).stdout.trim());
      const read = timed(`${tar} | cat > /dev/null`);
      const zfile = path.join(work, "limits.tar.zst");
      const z = timed(`${tar} | zstd -q -T0 -${AGENT_ZSTD_LEVEL} -c > ${zfile}`);
      const zBytes = statSync(zfile).size;
      const unz = timed(`zstd -q -d -c ${zfile} > /dev/null`);
      const put = await timedAsync(() => upload(`limits/${target}.tar.zst`, zfile));
      rmSync(zfile);
      const get = await timedAsync(() => download(`limits/${target}.tar.zst`, zfile));
      rmSync(zfile);
      const limits = {
        readDataDir: tarBytes / read.wall,
        zstdCompress: tarBytes / z.wall,
        zstdDecompress: tarBytes / unz.wall,
        s3Put: zBytes / put.wall,
        s3Get: zBytes / get.wall,
        compressedRatio: zBytes / tarBytes,
      };
      say(`${target} MiB: limits read ${(limits.readDataDir / MiB).toFixed(0)} MiB/s, zstd -${AGENT_ZSTD_LEVEL} ${(limits.zstdCompress / MiB).toFixed(0)} MiB/s, put ${(limits.s3Put / MiB).toFixed(0)} MiB/s, get ${(limits.s3Get / MiB).toFixed(0)} MiB/s`);

      const table: Record<string, Row> = {};
      const row = (name: string) => (table[name] ??= { backupWall: [], backupCpu: [], stored: [], restoreWall: [], restoreCpu: [], backupPeak: [], restorePeak: [] });
      let lastFull = "";
      for (let run = 1; run <= RUNS; run++) {
        say(`${target} MiB: run ${run}/${RUNS}`);
        // Seed, custom format: dump to a file, then upload it.
        {
          const file = path.join(work, "app.dump");
          const dump = timed(`${PG_BIN}/pg_dump --format=custom --compress=9 -f ${file} '${primary.urlFor("app")}'`);
          const up = await timedAsync(() => upload(`seed/custom-${target}-${run}.dump`, file));
          const r = row(SEED_CUSTOM);
          r.backupWall.push(dump.wall + up.wall);
          r.backupCpu.push(dump.cpu + up.cpu);
          r.stored.push(up.value);
          rmSync(file);
          const dl = await timedAsync(() => download(`seed/custom-${target}-${run}.dump`, file));
          const db = await startTmpPostgres();
          try {
            await pgQuery(db.url, "CREATE DATABASE app");
            const rest = timed(`${PG_BIN}/pg_restore --no-owner -d '${db.urlFor("app")}' ${file}`);
            await expectRows(db.urlFor("app"), "pg_restore");
            r.restoreWall.push(dl.wall + rest.wall);
            r.restoreCpu.push(dl.cpu + rest.cpu);
          } finally {
            await db.stop();
            rmSync(file, { force: true });
          }
        }
        // Seed, its "full" mode: pg_dumpall | gzip, then upload.
        {
          const file = path.join(work, "all.sql.gz");
          const dump = timed(`PGPASSWORD='${primary.password}' ${PG_BIN}/pg_dumpall -h ${primary.host} -p ${primary.port} -U postgres | gzip > ${file}`);
          const up = await timedAsync(() => upload(`seed/all-${target}-${run}.sql.gz`, file));
          const r = row(SEED_DUMPALL);
          r.backupWall.push(dump.wall + up.wall);
          r.backupCpu.push(dump.cpu + up.cpu);
          r.stored.push(up.value);
          rmSync(file);
          const dl = await timedAsync(() => download(`seed/all-${target}-${run}.sql.gz`, file));
          const db = await startTmpPostgres();
          try {
            // The dump re-creates the postgres role, which exists: that one error is expected, any other fails the run.
            const err = `${file}.err`;
            // The dump sets postgres's password to the primary's, and psql's \connect reuses the
            // password it has: the target gets the same one first, as a rebuilt server would.
            await pgQuery(db.url, `ALTER ROLE postgres PASSWORD '${primary.password}'`);
            const asPrimary = `postgres://postgres:${primary.password}@${db.host}:${db.port}`;
            const rest = timed(`gunzip -c ${file} | ${PG_BIN}/psql -X -q -o /dev/null -d '${asPrimary}/postgres' 2>${err}; if grep ERROR ${err} | grep -vq 'role "postgres" already exists'; then cat ${err} >&2; exit 1; fi`);
            await expectRows(`${asPrimary}/app`, "psql of pg_dumpall").catch((e: Error) => {
              throw new Error(`${e.message}\npsql said:\n${readFileSync(err, "utf8").slice(-2000)}`);
            });
            r.restoreWall.push(dl.wall + rest.wall);
            r.restoreCpu.push(dl.cpu + rest.cpu);
          } finally {
            await db.stop();
            rmSync(file, { force: true });
          }
        }
        // Ours, physical base only, then with the logical dump beside it (the default).
        for (const [name, extra] of [[OURS_BASE, "--no-logical"], [OURS_DEFAULT, ""]] as const) {
          const b = timedWithPeak(`${agent} backup --type full --json ${extra} 2>/dev/null`);
          const sum = JSON.parse(b.stdout) as { storedBytes: number; backupId: string };
          const r = row(name);
          r.backupWall.push(b.wall);
          r.backupCpu.push(b.cpu);
          r.stored.push(sum.storedBytes);
          r.backupPeak.push(b.peakBytes);
          if (extra === "--no-logical") lastFull = sum.backupId;
          if (extra === "") continue; // the restore reads the same base either way
          const dir = path.join(work, `restore-${run}`);
          const rest = timedWithPeak(`${agent} restore --target ${dir} --backup-id ${lastFull} 2>/dev/null`);
          const start = await timedAsync(() => startRestored(dir, primary.password));
          try {
            await expectRows(start.value.url("app"), "kdr-agent restore");
          } finally {
            start.value.stop();
          }
          rmSync(dir, { recursive: true, force: true });
          const rr = row(OURS_BASE);
          rr.restoreWall.push(rest.wall + start.wall);
          rr.restoreCpu.push(rest.cpu + start.cpu);
          rr.restorePeak.push(rest.peakBytes);
        }
      }
      // An incremental after a 1% change: the newest 1% of the orders change state.
      const changed = Math.max(1, Math.floor(rows / 100));
      await pgQuery(primary.urlFor("app"), `UPDATE orders SET status = 'returned', amount = amount + 1 WHERE id > ${rows - changed}`);
      const inc = JSON.parse(timed(`${agent} backup --type incremental --json 2>/dev/null`).stdout) as { storedBytes: number };
      results.push({
        targetMiB: target,
        databaseBytes,
        rows,
        limits,
        pipelines: table,
        incremental: { changedRows: changed, storedBytes: inc.storedBytes, fullStoredBytes: median(table[OURS_BASE]!.stored) },
      });
    }

    const cpu = cpus();
    const machine = {
      cpus: cpu.length,
      cpuModel: cpu[0]?.model ?? "?",
      memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
      kernel: release(),
      postgres: spawnSync(`${PG_BIN}/postgres`, ["--version"], { encoding: "utf8" }).stdout.trim(),
      s3: "Ceph RGW on this machine (the local platform's primary region)",
    };
    const report = { date: new Date().toISOString(), runs: RUNS, machine, sizes: results };
    const text = render(report);
    process.stdout.write(`${text}\n`);
    if (values.out) writeFileSync(values.out, `${text}\n`);
    if (values.json) writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
  } finally {
    await primary.stop().catch(() => undefined);
    await w.close();
  }
}

function render(report: { date: string; runs: number; machine: Record<string, string | number>; sizes: SizeResult[] }): string {
  const m = report.machine;
  const mib = (b: number) => (b / MiB).toFixed(1);
  const lines = [
    `Run ${report.date.slice(0, 16).replace("T", " ")} UTC on ${m.cpus} x ${m.cpuModel}, ${m.memoryGiB} GiB RAM, Linux ${m.kernel}, ${m.postgres}, S3: ${m.s3}. Medians of ${report.runs} run(s); ratios against the seed's pipelines in the same run.`,
    "Restores are counted row by row; ours includes starting the restored server and replaying its WAL, the seed's restore into an already running one. Our pipeline encrypts (age), the seed's does not.",
  ];
  for (const s of report.sizes) {
    const f = (xs: number[], d = 1) => (xs.length ? median(xs).toFixed(d) : "-");
    const ratio = (a: number[], b: number[]) => (a.length && b.length ? (median(a) / median(b)).toFixed(2) : "-");
    const l = s.limits;
    // Source bytes per second each path can reach at most: the backup reads, compresses and puts
    // the compressed bytes; the restore gets them and decompresses.
    const backupLimit = Math.min(l.readDataDir, l.zstdCompress, l.s3Put / l.compressedRatio);
    const restoreLimit = Math.min(l.zstdDecompress, l.s3Get / l.compressedRatio);
    const custom = s.pipelines[SEED_CUSTOM]!;
    const dumpall = s.pipelines[SEED_DUMPALL]!;
    lines.push(
      "",
      `### PostgreSQL, ${mib(s.databaseBytes)} MiB on disk (${s.rows} rows)`,
      "",
      `Machine limits on these bytes: reading the data directory ${mib(l.readDataDir)} MiB/s; zstd -T0 -${AGENT_ZSTD_LEVEL} ${mib(l.zstdCompress)} MiB/s in, ${mib(l.zstdDecompress)} MiB/s out (compressed to ${(l.compressedRatio * 100).toFixed(0)}%); S3 put ${mib(l.s3Put)} MiB/s, get ${mib(l.s3Get)} MiB/s. The slowest step bounds a backup at ${mib(backupLimit)} MiB/s and a restore at ${mib(restoreLimit)} MiB/s of data.`,
      "",
      "| pipeline | backup wall s | backup CPU s | stored MiB | restore wall s | backup vs pg_dumpall | backup vs pg_dump -Fc | restore vs pg_dumpall | restore vs pg_dump -Fc | backup MiB/s (of limit) | restore MiB/s (of limit) | agent peak MiB (backup / restore) |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const [name, r] of Object.entries(s.pipelines)) {
      const rate = (xs: number[], limit: number) => (xs.length ? `${mib(s.databaseBytes / median(xs))} (${((s.databaseBytes / median(xs) / limit) * 100).toFixed(0)}%)` : "-");
      const peak = r.backupPeak.length ? `${mib(median(r.backupPeak))} / ${r.restorePeak.length ? mib(median(r.restorePeak)) : "-"}` : "-";
      lines.push(
        `| ${name} | ${f(r.backupWall)} | ${f(r.backupCpu)} | ${mib(median(r.stored))} | ${f(r.restoreWall)} | ${ratio(r.backupWall, dumpall.backupWall)} | ${ratio(r.backupWall, custom.backupWall)} | ${ratio(r.restoreWall, dumpall.restoreWall)} | ${ratio(r.restoreWall, custom.restoreWall)} | ${rate(r.backupWall, backupLimit)} | ${rate(r.restoreWall, restoreLimit)} | ${peak} |`,
      );
    }
    const inc = s.incremental;
    lines.push("", `Incremental after updating ${inc.changedRows} rows (1%, the newest): ${mib(inc.storedBytes)} MiB stored, ${((inc.storedBytes / inc.fullStoredBytes) * 100).toFixed(1)}% of a full (${mib(inc.fullStoredBytes)} MiB).`);
  }
  return lines.join("\n");
}

main().catch((e: Error) => {
  process.stderr.write(`bench: ${e.message}\n`);
  process.exit(1);
});
