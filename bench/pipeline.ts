/**
 * Benchmark: the seed's PostgreSQL backup pipeline against ours, on the same database, the same
 * S3 server (the local RGW) and the same machine, in one run.
 *
 *   seed custom:  pg_dump --format=custom --compress=9 > file, then upload the file
 *   seed dumpall: pg_dumpall | gzip > file, then upload the file (the seed's "full" mode)
 *   ours:         kdr-agent backup --type full --no-logical (pg_basebackup tar | zstd | age |
 *                 S3 multipart, SHA-256 on the way, manifest, catalog row)
 *   ours+logical: the same plus the logical pg_dump the agent keeps beside the base by default
 *
 * and the restore of each into a fresh server (pg_restore / psql vs kdr-agent restore + start with
 * WAL replay). Ours gives back the whole cluster, the seed's custom dump one database: the restore
 * columns compare what each pipeline returns after a lost server, the question a DR plan asks. Wall seconds and CPU seconds (user+sys of the whole process tree, from bash's
 * `time`) are medians of --runs; stored bytes are what S3 holds. Our pipeline also encrypts, the
 * seed's does not: the table says so rather than hiding it.
 *
 * Run: npm run bench -- [--scale 6] [--runs 3] [--out file.md] (scale: 100k rows each; needs
 * `bash scripts/platform-up.sh`).
 * Not a test: nothing here passes or fails on a time.
 */
import { HeadObjectCommand, GetObjectCommand } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { spawnSync } from "node:child_process";
import { createReadStream, createWriteStream, mkdirSync, readFileSync, rmSync } from "node:fs";
import { cpus, totalmem, release } from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import type { Readable } from "node:stream";
import { parseArgs } from "node:util";
import { writeFileSync } from "node:fs";
import { AGENT_ENV } from "../contract/index.js";
import { agentWorld, pgQuery, startRestored } from "../test/support/s3.js";
import { PG_BIN, startTmpPostgres } from "../test/support/tmp-postgres.js";

const { values } = parseArgs({ options: { scale: { type: "string", default: "6" }, runs: { type: "string", default: "3" }, out: { type: "string" } } });
const SCALE = Number(values.scale);
const RUNS = Number(values.runs);
if (!Number.isInteger(SCALE) || SCALE < 1 || !Number.isInteger(RUNS) || RUNS < 1) {
  throw new Error(`--scale and --runs take whole numbers >= 1 (got ${values.scale}, ${values.runs}).`);
}

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

async function timedAsync<T>(fn: () => Promise<T>): Promise<Timed & { value: T }> {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const value = await fn();
  const c = process.cpuUsage(c0);
  return { wall: Number(process.hrtime.bigint() - t0) / 1e9, cpu: (c.user + c.system) / 1e6, value };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const w = await agentWorld("kdrbench-pipeline");
  const primary = await startTmpPostgres();
  const work = path.join(w.root, "bench");
  mkdirSync(work, { recursive: true });
  try {
    await pgQuery(primary.url, "CREATE ROLE kdr_backup LOGIN REPLICATION PASSWORD 'kdr-backup-pw'");
    await pgQuery(primary.url, "GRANT pg_read_all_data TO kdr_backup");
    await pgQuery(primary.url, "GRANT EXECUTE ON FUNCTION pg_switch_wal() TO kdr_backup");
    writeFileSync(path.join(w.secretDir, "kdr-target-password"), "kdr-backup-pw\n", { mode: 0o600 });
    await pgQuery(primary.url, "CREATE DATABASE app");
    // Mixed content that compresses like application data (ids, amounts, states, hex tokens,
    // JSON, timestamps), not pgbench's blank filler: SCALE x 100k rows, with two indexes.
    process.stderr.write(`bench: ${SCALE * 100_000} rows ...\n`);
    await pgQuery(
      primary.urlFor("app"),
      `CREATE TABLE orders (id bigserial PRIMARY KEY, customer int NOT NULL, amount numeric(12,2) NOT NULL, status text NOT NULL, token text NOT NULL,
                            payload jsonb NOT NULL, created timestamptz NOT NULL)`,
    );
    await pgQuery(
      primary.urlFor("app"),
      `INSERT INTO orders (customer, amount, status, token, payload, created)
       SELECT (random() * 50000)::int, round((random() * 1000)::numeric, 2), (ARRAY['new','paid','shipped','returned'])[1 + (g % 4)],
              md5(random()::text), jsonb_build_object('sku', 'SKU-' || (g % 5000), 'qty', 1 + g % 7, 'note', md5(g::text)),
              now() - make_interval(secs => g)
       FROM generate_series(1, ${SCALE * 100_000}) g`,
    );
    await pgQuery(primary.urlFor("app"), "CREATE INDEX orders_customer ON orders (customer, created)");
    const rows = SCALE * 100_000;
    // A timing of a restore that lost data would be worthless: each one is counted.
    const expectRows = async (url: string, what: string) => {
      const [c] = await pgQuery<{ n: string }>(url, "SELECT count(*)::text AS n FROM orders");
      if (Number(c!.n) !== rows) throw new Error(`${what} gave back ${c!.n} of ${rows} rows: the benchmark stops rather than time a broken restore.`);
    };
    const [size] = await pgQuery<{ b: string }>(primary.url, "SELECT sum(pg_database_size(datname))::text AS b FROM pg_database");
    const dbBytes = Number(size!.b);
    const env = w.env("bench-pg", {
      [AGENT_ENV.engine]: "postgres",
      [AGENT_ENV.targetHost]: primary.host,
      [AGENT_ENV.targetPort]: String(primary.port),
      [AGENT_ENV.targetUser]: "kdr_backup",
      [AGENT_ENV.walSwitchSeconds]: "2",
    });
    const upload = async (key: string, file: string) => {
      const up = new Upload({ client: w.bucket.client, params: { Bucket: w.bucket.bucket, Key: key, Body: createReadStream(file) }, partSize: 8 * 1024 * 1024, queueSize: 2 });
      await up.done();
      return (await w.bucket.client.send(new HeadObjectCommand({ Bucket: w.bucket.bucket, Key: key }))).ContentLength ?? 0;
    };
    const download = async (key: string, file: string) => {
      const o = await w.bucket.client.send(new GetObjectCommand({ Bucket: w.bucket.bucket, Key: key }));
      await pipeline(o.Body as Readable, createWriteStream(file));
    };

    type Row = { backupWall: number[]; backupCpu: number[]; stored: number[]; restoreWall: number[]; restoreCpu: number[] };
    const table: Record<string, Row> = {};
    const row = (name: string) => (table[name] ??= { backupWall: [], backupCpu: [], stored: [], restoreWall: [], restoreCpu: [] });

    for (let run = 1; run <= RUNS; run++) {
      process.stderr.write(`bench: run ${run}/${RUNS}\n`);
      // Seed, custom format: dump to a file, then upload it.
      {
        const file = path.join(work, "app.dump");
        const dump = timed(`${PG_BIN}/pg_dump --format=custom --compress=9 -f ${file} '${primary.urlFor("app")}'`);
        const up = await timedAsync(() => upload(`seed/custom-${run}.dump`, file));
        const r = row("seed: pg_dump -Fc -Z9, then upload");
        r.backupWall.push(dump.wall + up.wall);
        r.backupCpu.push(dump.cpu + up.cpu);
        r.stored.push(up.value);
        rmSync(file);
        const dl = await timedAsync(() => download(`seed/custom-${run}.dump`, file));
        const target = await startTmpPostgres();
        try {
          await pgQuery(target.url, "CREATE DATABASE app");
          const rest = timed(`${PG_BIN}/pg_restore --no-owner -d '${target.urlFor("app")}' ${file}`);
          await expectRows(target.urlFor("app"), "pg_restore");
          r.restoreWall.push(dl.wall + rest.wall);
          r.restoreCpu.push(dl.cpu + rest.cpu);
        } finally {
          await target.stop();
          rmSync(file, { force: true });
        }
      }
      // Seed, its "full" mode: pg_dumpall | gzip, then upload.
      {
        const file = path.join(work, "all.sql.gz");
        const dump = timed(`PGPASSWORD='${primary.password}' ${PG_BIN}/pg_dumpall -h ${primary.host} -p ${primary.port} -U postgres | gzip > ${file}`);
        const up = await timedAsync(() => upload(`seed/all-${run}.sql.gz`, file));
        const r = row("seed: pg_dumpall, gzip, then upload");
        r.backupWall.push(dump.wall + up.wall);
        r.backupCpu.push(dump.cpu + up.cpu);
        r.stored.push(up.value);
        rmSync(file);
        const dl = await timedAsync(() => download(`seed/all-${run}.sql.gz`, file));
        const target = await startTmpPostgres();
        try {
          // The dump re-creates the postgres role, which exists: that one error is expected, any other fails the run.
          const err = `${file}.err`;
          // The dump sets postgres's password to the primary's, and psql's \connect reuses the
          // password it has: the target gets the same one first, as a rebuilt server would.
          await pgQuery(target.url, `ALTER ROLE postgres PASSWORD '${primary.password}'`);
          const asPrimary = `postgres://postgres:${primary.password}@${target.host}:${target.port}`;
          const rest = timed(`gunzip -c ${file} | ${PG_BIN}/psql -X -q -o /dev/null -d '${asPrimary}/postgres' 2>${err}; if grep ERROR ${err} | grep -vq 'role "postgres" already exists'; then cat ${err} >&2; exit 1; fi`);
          await expectRows(`${asPrimary}/app`, "psql of pg_dumpall").catch((e: Error) => {
            throw new Error(`${e.message}\npsql said:\n${readFileSync(err, "utf8").slice(-2000)}`);
          });
          r.restoreWall.push(dl.wall + rest.wall);
          r.restoreCpu.push(dl.cpu + rest.cpu);
        } finally {
          await target.stop();
          rmSync(file, { force: true });
        }
      }
      // Ours, physical base only, then with the logical dump beside it (the default).
      for (const [name, extra] of [["ours: base, zstd, age, S3 multipart", "--no-logical"], ["ours: the same + logical pg_dump (default)", ""]] as const) {
        const envArgs = Object.entries(env).map(([k, v]) => `${k}='${v}'`).join(" ");
        const b = timed(`env -i ${envArgs} ${process.execPath} --import tsx ${path.resolve(__dirname, "../agent/cli.ts")} backup --type full --json ${extra} 2>/dev/null`);
        const sum = JSON.parse(b.stdout) as { storedBytes: number; backupId: string };
        const r = row(name);
        r.backupWall.push(b.wall);
        r.backupCpu.push(b.cpu);
        r.stored.push(sum.storedBytes);
        if (extra === "") continue; // the restore reads the same base either way
        const target = path.join(work, `restore-${run}`);
        const rest = timed(`env -i ${envArgs} ${process.execPath} --import tsx ${path.resolve(__dirname, "../agent/cli.ts")} restore --target ${target} --backup-id ${sum.backupId} 2>/dev/null`);
        const start = await timedAsync(() => startRestored(target, primary.password));
        try {
          await expectRows(start.value.url("app"), "kdr-agent restore");
        } finally {
          start.value.stop();
        }
        rmSync(target, { recursive: true, force: true });
        const rr = row("ours: base, zstd, age, S3 multipart");
        rr.restoreWall.push(rest.wall + start.wall);
        rr.restoreCpu.push(rest.cpu + start.cpu);
      }
    }

    const cpu = cpus();
    const machine = `${cpu.length} x ${cpu[0]?.model ?? "?"}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${release()}, ${spawnSync(`${PG_BIN}/postgres`, ["--version"], { encoding: "utf8" }).stdout.trim()}`;
    const base = table["seed: pg_dump -Fc -Z9, then upload"]!;
    const lines = [
      `Machine: ${machine}. Database: ${SCALE * 100_000} generated order rows, ${(dbBytes / 2 ** 20).toFixed(1)} MiB on disk (all databases). Medians of ${RUNS} run(s); ratios against "seed: pg_dump -Fc -Z9" in the same run. Restores are counted row by row; ours includes starting the restored server and replaying its WAL, the seed's restore into an already running one.`,
      "",
      "| pipeline | backup wall s | backup CPU s | stored MiB | restore wall s | restore CPU s | backup wall vs seed | stored vs seed | restore wall vs seed | encrypted |",
      "|---|---|---|---|---|---|---|---|---|---|",
    ];
    for (const [name, r] of Object.entries(table)) {
      const f = (xs: number[], d = 1) => (xs.length ? median(xs).toFixed(d) : "-");
      const ratio = (a: number[], b: number[]) => (a.length && b.length ? (median(a) / median(b)).toFixed(2) : "-");
      lines.push(
        `| ${name} | ${f(r.backupWall)} | ${f(r.backupCpu)} | ${(median(r.stored) / 2 ** 20).toFixed(2)} | ${f(r.restoreWall)} | ${f(r.restoreCpu)} | ${ratio(r.backupWall, base.backupWall)} | ${ratio(r.stored, base.stored)} | ${ratio(r.restoreWall, base.restoreWall)} | ${name.startsWith("ours") ? "yes (age)" : "no"} |`,
      );
    }
    const text = lines.join("\n");
    process.stdout.write(`${text}\n`);
    if (values.out) writeFileSync(values.out, `${text}\n`);
  } finally {
    await primary.stop().catch(() => undefined);
    await w.close();
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench: ${e.message}\n`);
  process.exit(1);
});
