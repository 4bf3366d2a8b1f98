/**
 * Prometheus and Alertmanager on the local platform, as the local stack declares them (Debian's
 * 2.42 and 0.25 in kryonix-dr/prometheus:local): Prometheus finds the sidecars through Swarm
 * service discovery, scrapes them, loads the rule file the program generates, and what it scraped
 * equals the catalog; a backup that fails reaches a webhook (notificationTargets) once, readable.
 * Needs `bash scripts/platform-up.sh` first.
 */
import { createServer, type Server } from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readPlatform } from "../../local/platform.js";
import { runAsync } from "../support/spawn.js";
import { DockerApi } from "../../local/docker-api.js";
import { join } from "node:path";

const ROOT = join(__dirname, "..", "..");
const CLI = join(ROOT, "bin", "kryonix-dr.mjs");
const PROM = "http://127.0.0.1:19090";
const platform = readPlatform();

interface Sample { metric: Record<string, string>; value: [number, string] }
async function query(q: string): Promise<Sample[]> {
  const r = await fetch(`${PROM}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = (await r.json()) as { status: string; data: { result: Sample[] }; error?: string };
  if (body.status !== "success") throw new Error(`Prometheus refused ${q}: ${body.error}`);
  return body.data.result;
}
async function until<T>(what: string, seconds: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${seconds} s${last ? ` (last error: ${(last as Error).message})` : ""}`);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

/** A webhook receiver on the host, where the containers reach it (the gateway address). */
const received: Array<{ status: string; groupKey: string; alerts: Array<{ status: string; labels: Record<string, string>; annotations: Record<string, string> }> }> = [];
let sink: Server;
const tmp = mkdtempSync(join(tmpdir(), "kdrtest-prom-"));

beforeAll(async () => {
  sink = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => {
      try {
        received.push(JSON.parse(body));
      } catch {
        /* not a notification */
      }
      res.end("ok");
    });
  });
  await new Promise<void>((r) => sink.listen(0, "0.0.0.0", r));
  const port = (sink.address() as { port: number }).port;
  const config = join(tmp, "config.json");
  writeFileSync(config, JSON.stringify({ notificationTargets: { value: JSON.stringify({ sink: `http://${platform.gatewayIp}:${port}/hook` }), secret: true } }), { mode: 0o600 });
  const d = await runAsync(process.execPath, [CLI, "deploy", "--stack", "local", "--quiet", "--config-file", config], { timeoutMs: 600_000, cwd: ROOT });
  if (d.status !== 0) throw new Error(`deploy of the local stack failed:\n${d.stderr.slice(-3000)}`);
}, 620_000);

afterAll(async () => {
  await runAsync(process.execPath, [CLI, "destroy", "--stack", "local", "--force", "--quiet"], { timeoutMs: 300_000, cwd: ROOT });
  sink?.close();
  rmSync(tmp, { recursive: true, force: true });
}, 320_000);

/** The local stack's sidecars: its three services' and the catalog server's. */
const EXPECTED_SIDECARS = ["files", "kdr-catalog", "postgresql", "redis"];

describe("Prometheus declared by the local stack", () => {
  it("discovers every sidecar through Swarm service discovery and scrapes it, and no service that serves no metrics", async () => {
    // Every target, not only the sidecars: a task that started last (the drill cron, say) is
    // "unknown" until its first scrape, which is no fault of its own.
    let seen: Array<{ labels: Record<string, string>; health: string; lastError?: string }> = [];
    const targets = await until("every sidecar, cron and replicator up", 120, async () => {
      const r = (await (await fetch(`${PROM}/api/v1/targets?state=active`)).json()) as { data: { activeTargets: typeof seen } };
      seen = r.data.activeTargets;
      // Each sidecar by name: a count was met by the catalog server's sidecar while the files
      // sidecar's task had not started yet (cold run 13).
      const sidecars = new Set(seen.filter((t) => t.labels.kdr_role === "sidecar").map((t) => t.labels.service));
      return EXPECTED_SIDECARS.every((x) => sidecars.has(x)) && seen.every((t) => t.health === "up") ? seen : undefined;
    }).catch((e: Error) => {
      const present = new Set(seen.map((t) => t.labels.service));
      throw new Error(
        `${e.message}; not up: ${JSON.stringify(seen.filter((t) => t.health !== "up").map((t) => ({ role: t.labels.kdr_role, health: t.health, lastError: t.lastError })))}; ` +
          `no target at all: ${EXPECTED_SIDECARS.filter((x) => !present.has(x)).join(", ") || "none"}`,
      );
    });
    const sidecarServices = targets.filter((t) => t.labels.kdr_role === "sidecar").map((t) => t.labels.service).sort();
    expect(sidecarServices).toEqual(expect.arrayContaining(["files", "postgresql", "redis"]));
    // The protected services themselves (PostgreSQL, Redis, files) and Prometheus serve no /metrics: not targets.
    expect(targets.filter((t) => !/^(sidecar|replicator|cron-.*)$/.test(t.labels.kdr_role ?? ""))).toEqual([]);
    expect(targets.filter((t) => t.health !== "up").map((t) => t.labels)).toEqual([]);
  }, 150_000);

  it("loaded the rule file the program generates", async () => {
    const r = (await (await fetch(`${PROM}/api/v1/rules`)).json()) as { data: { groups: Array<{ name: string; file: string; rules: Array<{ name: string; health: string }> }> } };
    const group = r.data.groups.find((g) => g.name === "kryonix-dr")!;
    expect(group.file).toBe("/etc/prometheus/rules/kryonix-dr.yml");
    expect(group.rules.map((x) => x.name).sort()).toEqual(
      ["KryonixDrAgentDown", "KryonixDrBackupFailures", "KryonixDrDrillFailed", "KryonixDrDrillOverdue", "KryonixDrReplicationLag", "KryonixDrResticRepositoryReplaced", "KryonixDrRpoAtRisk", "KryonixDrRpoBreached", "KryonixDrStandbyStuck", "KryonixDrUnverified", "KryonixDrVerifyFailed", "KryonixDrWalLag"].sort(),
    );
    expect(group.rules.filter((x) => x.health === "err")).toEqual([]);
  });

  it("scraped values equal the catalog's: Redis's last incremental, its stored and raw bytes, and each service's RPO target", async () => {
    const db = new pg.Client({ host: platform.catalog.host, port: platform.catalog.port, user: platform.catalog.user, password: platform.catalog.password, database: "kryonix_dr" });
    await db.connect();
    try {
      // One instant query, so the three values come from one scrape.
      const samples = await until("a Redis incremental scraped", 120, async () => {
        const s = await query('{__name__=~"kdr_backup_(last_success_timestamp_seconds|stored_bytes|raw_bytes)",service="redis",type="incremental"}');
        return s.length === 3 ? s : undefined;
      });
      const v = Object.fromEntries(samples.map((s) => [s.metric.__name__, Number(s.value[1])]));
      const { rows } = await db.query(
        `SELECT backup_size::float8 AS stored, raw_size::float8 AS raw, extract(epoch FROM completed_at)::float8 AS at FROM backup_management
          WHERE service_name = 'redis' AND backup_type = 'incremental' AND backup_status = 'completed'
          ORDER BY abs(extract(epoch FROM completed_at) - $1) LIMIT 1`,
        [v.kdr_backup_last_success_timestamp_seconds],
      );
      expect(Math.abs(rows[0].at - v.kdr_backup_last_success_timestamp_seconds!)).toBeLessThan(2);
      expect({ stored: v.kdr_backup_stored_bytes, raw: v.kdr_backup_raw_bytes }).toEqual({ stored: rows[0].stored, raw: rows[0].raw });
      const targets = await query("kdr_rpo_target_seconds");
      const health = (await db.query("SELECT service_name, extract(epoch FROM rpo_target)::float8 AS rpo FROM backup_health_monitoring")).rows;
      for (const svc of ["postgresql", "redis", "files"]) {
        const scraped = targets.filter((t) => t.metric.service === svc).map((t) => Number(t.value[1]));
        expect(scraped.length, `${svc}: no kdr_rpo_target_seconds`).toBeGreaterThan(0);
        expect(new Set(scraped)).toEqual(new Set([health.find((h) => h.service_name === svc)!.rpo]));
      }
    } finally {
      await db.end();
    }
  }, 200_000);
});

describe("Alertmanager declared by the local stack", () => {
  it("tells the webhook target once, readably, when a backup fails (the protected Redis stopped)", async () => {
    const docker = new DockerApi();
    const svc = await docker.request<any>("GET", "/services/kdr-local-redis");
    await docker.request("POST", `/services/${svc.ID}/update?version=${svc.Version.Index}`, { ...svc.Spec, Mode: { Replicated: { Replicas: 0 } } });
    const isIt = (a: { labels: Record<string, string> }) => a.labels.alertname === "KryonixDrBackupFailures" && a.labels.service === "redis";
    const first = await until("the failure notification", 180, async () => received.find((n) => n.status === "firing" && n.alerts.some(isIt)));
    const alert = first.alerts.find(isIt)!;
    expect(alert).toMatchObject({ status: "firing", labels: { severity: "warning", service: "redis" }, annotations: { summary: "redis: backup runs failed in the last 24 h" } });
    // More failed runs follow every 30 s; the person is not told again (repeat every 4 h). Each
    // schedule (incremental, full) is its own group, so a full that fails too in this window is one
    // more notice, of its own: no group is notified twice.
    await new Promise((r) => setTimeout(r, 75_000));
    const byGroup = new Map<string, string[]>();
    for (const n of received.filter((x) => x.alerts.some(isIt))) byGroup.set(n.groupKey, [...(byGroup.get(n.groupKey) ?? []), n.status]);
    expect(byGroup.size).toBeGreaterThan(0);
    for (const [group, notices] of byGroup) expect(notices, group).toEqual(["firing"]);
  }, 300_000);
});
