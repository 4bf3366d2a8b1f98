/**
 * The serve sidecar under continuous writes: WAL streaming with the default segment-switch
 * interval, the primary killed without warning, and a restore of the latest point. Prints the
 * measured data loss (last committed write on the primary vs newest row in the restore).
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agentWorld, type AgentWorld } from "../support/s3.js";
import { freePort, startTmpPostgres, type TmpPostgres } from "../support/tmp-postgres.js";
import { startRestored } from "../support/s3.js";

let w: AgentWorld;
let primary: TmpPostgres;
const SERVICE = "pg-orders";

beforeAll(async () => {
  w = await agentWorld("kdrtest-agent-rpo");
  primary = await startTmpPostgres();
  writeFileSync(path.join(w.secretDir, "kdr-target-password"), primary.password + "\n", { mode: 0o600 });
  const c = new pg.Client({ connectionString: primary.url });
  await c.connect();
  await c.query("CREATE TABLE orders (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), payload text)");
  await c.end();
});

afterAll(async () => {
  await primary?.stop().catch(() => undefined);
  await w?.close();
});

describe("agent: postgres RPO under continuous writes", () => {
  it("loses at most 60 s of committed data when the primary is killed", async () => {
    const env = w.env(SERVICE, {
      KDR_ENGINE: "postgres",
      KDR_TARGET_HOST: primary.host,
      KDR_TARGET_PORT: String(primary.port),
      KDR_TARGET_USER: "postgres",
      // KDR_WAL_SWITCH_SECONDS left at its default.
    });
    const full = await w.run(["backup", "--type", "full", "--no-logical"], env);
    expect(full.code, full.stderr).toBe(0);
    const port = await freePort();
    // The sidecar schedules its own incrementals (croner, 6-field) while it streams WAL.
    const serve = w.start(["serve"], { ...env, KDR_METRICS_PORT: String(port), KDR_SCHEDULE_INCREMENTAL: "*/15 * * * * *" });

    const c = new pg.Client({ connectionString: primary.url });
    await c.connect();
    let lastCommitted: Date | undefined;
    // Writes for 40 s, and on until the sidecar's first scheduled incremental has completed (on a
    // loaded machine its start, the stream and the first run take longer), at most 100 s.
    const started = Date.now();
    let metrics = "";
    let checkedAt = 0;
    const incremental = /kdr_backup_last_success_timestamp_seconds\{service="pg-orders",type="incremental"\} /;
    while (Date.now() - started < 100_000) {
      const r = await c.query<{ at: Date }>("INSERT INTO orders (payload) VALUES (repeat('o', 200)) RETURNING at");
      lastCommitted = r.rows[0]!.at;
      await new Promise((res) => setTimeout(res, 50));
      if (Date.now() - started >= 40_000 && Date.now() - checkedAt >= 1000) {
        checkedAt = Date.now();
        metrics = await fetch(`http://127.0.0.1:${port}/metrics`).then((x) => x.text(), () => "");
        if (incremental.test(metrics)) break;
      }
    }
    await c.end();
    expect(metrics, serve.output()).toMatch(/kdr_wal_segments_uploaded_total\{service="pg-orders"\} [1-9]/);
    expect(metrics).toMatch(/kdr_wal_lag_seconds\{service="pg-orders"\} /);
    expect(metrics).toMatch(incremental);
    const hz = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(hz.status).toBe(200);
    const incs = (await w.db.query("SELECT backup_size FROM backup_management WHERE service_name = $1 AND backup_type = 'incremental' AND backup_status = 'completed'", [SERVICE])).rows;
    expect(incs.length).toBeGreaterThanOrEqual(1);
    // No shutdown checkpoint, no goodbye: SIGKILL the postmaster.
    const pid = Number(readFileSync(path.join(primary.dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
    process.kill(pid, "SIGKILL");
    const killedAt = Date.now();
    // The sidecar notices the lost connection and uploads the partial segment it has.
    for (let i = 0; i < 40 && !/partial/.test(serve.output()); i++) await new Promise((res) => setTimeout(res, 250));
    await new Promise((res) => setTimeout(res, 3000));
    serve.kill("SIGTERM");
    await new Promise((res) => serve.once("close", res));

    const segs = (await w.db.query("SELECT segment_name, covers_until FROM wal_segment WHERE service_name = $1 ORDER BY segment_name", [SERVICE])).rows;
    const completed = segs.filter((s) => !s.segment_name.endsWith(".partial"));
    const target = path.join(w.root, "rpo-restore");
    const r = await w.run(["restore", "--target", target, "--json"], env);
    expect(r.code, r.stderr).toBe(0);
    const srv = await startRestored(target, primary.password);
    try {
      const cc = new pg.Client({ connectionString: srv.url("postgres") });
      await cc.connect();
      const [row] = (await cc.query<{ at: Date; n: string }>("SELECT max(at) AS at, count(*) AS n FROM orders")).rows;
      await cc.end();
      const loss = (lastCommitted!.getTime() - row!.at.getTime()) / 1000;
      const lossCompletedOnly = completed.length ? (lastCommitted!.getTime() - new Date(completed[completed.length - 1].covers_until).getTime()) / 1000 : NaN;
      console.log(
        `RPO: ${segs.length} WAL file(s) archived (${completed.length} completed, ${segs.length - completed.length} partial); ` +
          `last commit on the primary ${lastCommitted!.toISOString()}, newest restored row ${row!.at.toISOString()} (${row!.n} rows): ` +
          `measured data loss ${loss.toFixed(2)} s (completed segments alone covered up to ${lossCompletedOnly.toFixed(1)} s before the kill); ` +
          `primary killed ${((Date.now() - killedAt) / 1000).toFixed(0)} s ago`,
      );
      expect(loss).toBeGreaterThanOrEqual(0);
      expect(loss).toBeLessThanOrEqual(60);
      expect(completed.length).toBeGreaterThan(0);
    } finally {
      srv.stop();
    }
  }, 180_000); // 40 s of writes (up to 100 s while the first incremental is late), the kill, the restore and a server start: ~55 s on an idle 2-core VM, so the 60 s default left no margin
});
