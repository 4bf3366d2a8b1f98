/**
 * The sidecar writes its effective schedule, RPO and RTO into its catalog health row when it
 * starts, so the catalog and `kryonix-dr status` judge freshness by the schedule it really runs.
 * Before, the row kept its 24 h default and a service backed up every 5 minutes was called stale
 * only after 48 h. Real agent (serve), restic, RGW and PostgreSQL.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatStatus, statusReport } from "../../cli/commands/status.js";
import { agentWorld, type AgentWorld } from "../support/s3.js";
import { freePort } from "../support/tmp-postgres.js";

let w: AgentWorld;
const SERVICE = "files-fast";

beforeAll(async () => {
  w = await agentWorld("kdrtest-health-settings");
});

afterAll(async () => {
  await w?.close();
});

describe("the sidecar's schedule and targets reach the catalog", () => {
  it("a 10-second schedule is in the health row with its RPO and RTO, and the service is stale after two missed runs", async () => {
    const vol = path.join(w.root, "vol");
    mkdirSync(vol);
    writeFileSync(path.join(vol, "a.bin"), randomBytes(4096));
    const env = w.env(SERVICE, {
      KDR_ENGINE: "volume",
      KDR_VOLUME_PATH: vol,
      KDR_SCHEDULE_FULL: "0 2 * * *",
      KDR_SCHEDULE_INCREMENTAL: "*/10 * * * * *",
      KDR_RPO_SECONDS: "30",
      KDR_RTO_SECONDS: "120",
      KDR_METRICS_PORT: String(await freePort()),
    });
    const serve = w.start(["serve"], env);
    let completed = 0;
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && completed < 1) {
      await new Promise((r) => setTimeout(r, 1000));
      completed = (await w.db.query("SELECT count(*)::int AS n FROM backup_management WHERE service_name = $1 AND backup_status = 'completed'", [SERVICE])).rows[0].n;
    }
    serve.kill("SIGTERM");
    await new Promise((r) => serve.once("close", r));
    expect(completed, serve.output()).toBeGreaterThanOrEqual(1);
    expect(serve.output()).toMatch(/catalog health settings: a backup at least every 10 s \(stale after 20 s\), RPO 30 s, RTO 2 min/);

    const h = (
      await w.db.query(
        `SELECT extract(epoch FROM backup_frequency)::int AS freq, extract(epoch FROM rpo_target)::int AS rpo, extract(epoch FROM rto_target)::int AS rto,
                schedule_full, schedule_incremental, settings_reported_at IS NOT NULL AS reported, effective_status
         FROM backup_health WHERE service_name = $1`,
        [SERVICE],
      )
    ).rows[0];
    expect(h).toMatchObject({ freq: 10, rpo: 30, rto: 120, schedule_full: "0 2 * * *", schedule_incremental: "*/10 * * * * *", reported: true });
    expect(h.effective_status).not.toBe("stale");

    // The sidecar is gone: after two missed runs (20 s past the last success) the catalog says stale.
    const last = (await w.db.query("SELECT max(completed_at) AS t FROM backup_management WHERE service_name = $1 AND backup_status = 'completed'", [SERVICE])).rows[0].t as Date;
    const wait = last.getTime() + 21_000 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const { rows } = await w.db.query("SELECT effective_status FROM backup_health WHERE service_name = $1", [SERVICE]);
    expect(rows[0].effective_status).toBe("stale");
    const text = formatStatus(await statusReport(w.db, { tenantId: w.tenantId }));
    expect(text).toMatch(/files-fast: stale: no successful backup within twice the schedule \(10\.0 s\)/);
  }, 120_000);
});
