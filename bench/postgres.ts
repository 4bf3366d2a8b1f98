/**
 * PostgreSQL: the seed's two pipelines against ours as the database grows.
 *
 *   seed custom:  pg_dump --format=custom --compress=9 > file, then upload the file
 *   seed dumpall: pg_dumpall | gzip > file, then upload the file (the seed's "full" mode)
 *   ours:         kdr-agent backup --type full --no-logical (pg_basebackup's tar, zstd by
 *                 pg_basebackup itself | age | S3 multipart, SHA-256 on the way, manifest, catalog
 *                 row): the default full on six days of seven
 *   ours+logical: the same with --logical: the logical pg_dump of every database beside the
 *                 base, which a full carries by default once every 7 days (pgLogicalEveryDays)
 *
 * and the restore of each into a fresh server (pg_restore / psql vs kdr-agent restore + start with
 * WAL replay). Ours gives back the whole cluster, the seed's custom dump one database: the restore
 * columns compare what each pipeline returns after a lost server, the question a DR plan asks.
 * The database grows through the sizes (MiB on disk, all databases); at each, an incremental
 * after the newest 1% of the rows changed (recent orders change state).
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { AGENT_ENV } from "../contract/index.js";
import { agentWorld, pgQuery, startRestored } from "../test/support/s3.js";
import { PG_BIN, startTmpPostgres } from "../test/support/tmp-postgres.js";
import { agentCommand, backupOurs, measureLimits, median, MiB, newRow, runAgent, s3, timed, timedAsync, type Row, type SizeResult } from "./measure.js";

const SEED_CUSTOM = "seed: pg_dump -Fc -Z9, then upload";
const SEED_DUMPALL = "seed: pg_dumpall, gzip, then upload";
const OURS_BASE = "ours: base, zstd, age, S3 multipart (the default full)";
const OURS_LOGICAL = "ours: the same + logical pg_dump (a full's, once a week by default)";

export async function benchPostgres(sizes: number[], runs: number, say: (m: string) => void): Promise<SizeResult[]> {
  const w = await agentWorld("kdrbench-postgres");
  const primary = await startTmpPostgres({ settings: { max_wal_size: "4GB", checkpoint_timeout: "15min" } });
  const work = path.join(w.root, "bench");
  const results: SizeResult[] = [];
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
    const agent = agentCommand(
      w.env("bench-pg", {
        [AGENT_ENV.engine]: "postgres",
        [AGENT_ENV.targetHost]: primary.host,
        [AGENT_ENV.targetPort]: String(primary.port),
        [AGENT_ENV.targetUser]: "kdr_backup",
        [AGENT_ENV.walSwitchSeconds]: "2",
      }),
    );
    const store = s3(w.bucket.client, w.bucket.bucket);
    timed(`mkdir -p ${work}`);

    for (const target of sizes) {
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
      const dataBytes = await dbSize();
      say(`postgres ${target} MiB: ${rows} rows, ${(dataBytes / MiB).toFixed(0)} MiB on disk`);
      // A timing of a restore that lost data would be worthless: each one is counted.
      const expectRows = async (url: string, what: string) => {
        const [c] = await pgQuery<{ n: string }>(url, "SELECT count(*)::text AS n FROM orders");
        if (Number(c!.n) !== rows) throw new Error(`${what} gave back ${c!.n} of ${rows} rows: the benchmark stops rather than time a broken restore.`);
      };
      // The server is live: tar's exit 1 (a file changed as it read, as the checkpointer writes)
      // is no error here, as it is none for a base backup.
      // The data alone: pg_wal holds what the slot keeps until the incremental, which is not the data.
      const limits = await measureLimits(`{ tar -cf - -C ${primary.dataDir} --warning=no-file-changed --exclude=./pg_wal/* --exclude=./pg_replslot/* . || [ $? -eq 1 ]; }`, store, `limits/pg-${target}.zst`, path.join(work, "limits.zst"));

      const table: Record<string, Row> = {};
      const row = (name: string) => (table[name] ??= newRow());
      let lastFull = "";
      for (let run = 1; run <= runs; run++) {
        say(`postgres ${target} MiB: run ${run}/${runs}`);
        // Seed, custom format: dump to a file, then upload it.
        {
          const file = path.join(work, "app.dump");
          const dump = timed(`${PG_BIN}/pg_dump --format=custom --compress=9 -f ${file} '${primary.urlFor("app")}'`);
          const up = await timedAsync(() => store.upload(`seed/custom-${target}-${run}.dump`, file));
          const r = row(SEED_CUSTOM);
          r.backupWall.push(dump.wall + up.wall);
          r.backupCpu.push(dump.cpu + up.cpu);
          r.stored.push(up.value);
          rmSync(file);
          const dl = await timedAsync(() => store.download(`seed/custom-${target}-${run}.dump`, file));
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
            await store.drop(`seed/custom-${target}-${run}.dump`);
          }
        }
        // Seed, its "full" mode: pg_dumpall | gzip, then upload.
        {
          const file = path.join(work, "all.sql.gz");
          const dump = timed(`PGPASSWORD='${primary.password}' ${PG_BIN}/pg_dumpall -h ${primary.host} -p ${primary.port} -U postgres | gzip > ${file}`);
          const up = await timedAsync(() => store.upload(`seed/all-${target}-${run}.sql.gz`, file));
          const r = row(SEED_DUMPALL);
          r.backupWall.push(dump.wall + up.wall);
          r.backupCpu.push(dump.cpu + up.cpu);
          r.stored.push(up.value);
          rmSync(file);
          const dl = await timedAsync(() => store.download(`seed/all-${target}-${run}.sql.gz`, file));
          const db = await startTmpPostgres();
          try {
            // The dump re-creates the postgres role, which exists: that one error is expected, any other fails the run.
            const err = `${file}.err`;
            // The dump sets postgres's password to the primary's, and psql's \connect reuses the
            // password it has: the target gets the same one first, as a rebuilt server would.
            await pgQuery(db.url, `ALTER ROLE postgres PASSWORD '${primary.password}'`);
            const asPrimary = `postgres://postgres:${primary.password}@${db.host}:${db.port}`;
            const rest = timed(`gunzip -c ${file} | ${PG_BIN}/psql -X -q -o /dev/null -d '${asPrimary}/postgres' 2>${err}; if grep ERROR ${err} | grep -v 'role "postgres" already exists' > /dev/null; then cat ${err} >&2; exit 1; fi`);
            await expectRows(`${asPrimary}/app`, "psql of pg_dumpall").catch((e: Error) => {
              throw new Error(`${e.message}\npsql said:\n${readFileSync(err, "utf8").slice(-2000)}`);
            });
            r.restoreWall.push(dl.wall + rest.wall);
            r.restoreCpu.push(dl.cpu + rest.cpu);
          } finally {
            await db.stop();
            rmSync(file, { force: true });
            await store.drop(`seed/all-${target}-${run}.sql.gz`);
          }
        }
        // Ours, physical base only (the default full), then with the logical dump beside it (weekly by default).
        let withLogical = "";
        for (const [name, extra] of [[OURS_BASE, "--no-logical"], [OURS_LOGICAL, "--logical"]] as const) {
          const sum = backupOurs(agent, row(name), { extra });
          if (extra === "--no-logical") lastFull = sum.backupId;
          else withLogical = sum.backupId;
          if (extra === "--logical") continue; // the restore reads the same base either way
          const dir = path.join(work, `restore-${run}`);
          const rest = runAgent(agent, `restore --target ${dir} --backup-id ${lastFull}`);
          const start = await timedAsync(() => startRestored(dir, primary.password));
          try {
            await expectRows(start.value.url("app"), "kdr-agent restore");
          } finally {
            start.value.stop();
          }
          rmSync(dir, { recursive: true, force: true });
          say(`postgres ${target} MiB: our restore ${rest.wall.toFixed(1)} s (download, age, zstd, tar), then the server's start and replay ${start.wall.toFixed(1)} s`);
          const rr = row(OURS_BASE);
          rr.restoreWall.push(rest.wall + start.wall);
          rr.restoreCpu.push(rest.cpu + start.cpu);
          rr.restorePeak.push(rest.peakBytes);
        }
        // Measured: both bases go (the WAL stays, for the incremental below).
        for (const id of [lastFull, withLogical]) await store.drop(`full/bench-pg/${id}/`);
      }
      // An incremental after a 1% change: the newest 1% of the orders change state.
      const changed = Math.max(1, Math.floor(rows / 100));
      await pgQuery(primary.urlFor("app"), `UPDATE orders SET status = 'returned', amount = amount + 1 WHERE id > ${rows - changed}`);
      const inc = JSON.parse(runAgent(agent, "backup --type incremental --json", false).stdout) as { storedBytes: number };
      results.push({
        engine: "postgres",
        targetMiB: target,
        dataBytes,
        what: `${rows} rows, on disk, all databases`,
        limits,
        pipelines: table,
        incremental: { change: `updating ${changed} rows (1%, the newest)`, storedBytes: inc.storedBytes, fullStoredBytes: median(table[OURS_BASE]!.stored) },
        restoreNote: "Restores are counted row by row; ours includes starting the restored server and replaying its WAL, the seed's restore into an already running one.",
      });
    }
    return results;
  } finally {
    await primary.stop().catch(() => undefined);
    await w.close();
  }
}
