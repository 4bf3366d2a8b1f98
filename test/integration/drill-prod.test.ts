/**
 * `kryonix-dr drill --stack prod`: the prod stack's own nine services (Pulumi.prod.yaml) backed
 * up, destroyed and restored on the real local platform (Docker Swarm, Ceph RGW, PostgreSQL 15),
 * then what came back inspected inside the recovered services' own containers: Prometheus's TSDB
 * answers for a moment before the backup, Grafana's SQLite passes its integrity check, Traefik's
 * acme.json kept its mode, Nextcloud is out of maintenance mode. Takes about 10 minutes on 2 cores.
 */
import { join } from "node:path";
import yaml from "js-yaml";
import { readFileSync } from "node:fs";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readPlatform } from "../../local/platform.js";
import { LABELS } from "../../contract/index.js";
import { runAsync } from "../support/spawn.js";
import { docker, dockerExec, nodeLabelsOf, setNodeLabels, waitForTask } from "../../local/drill/docker.js";
import { LOCAL_STACK, RECOVERY_STACK, type DrillReport } from "../../local/drill/drill.js";
import type { RawService } from "../../stacks/config/schema.js";

const ROOT = join(__dirname, "..", "..");
const CLI = join(ROOT, "bin", "kryonix-dr.mjs");
const cli = (args: string[], timeoutMs: number) => runAsync(process.execPath, [CLI, ...args], { timeoutMs, cwd: ROOT });
const prod = (yaml.load(readFileSync(join(ROOT, "Pulumi.prod.yaml"), "utf8")) as { config: Record<string, unknown> }).config["kryonix-dr:services"] as RawService[];
const prodLabels = Object.assign({}, ...prod.map((s) => nodeLabelsOf(s.placement ?? []))) as Record<string, string>;

let report: DrillReport;
let stderr = "";
/** The recovered service's running container (the recovery stack names them <prefix>-<service>). */
const recovered = (service: string) => waitForTask(`kdr-local-${service}`, 120_000, false);

beforeAll(async () => {
  // Writes for at least 30 s (the default is 75): the drill goes on writing until every service
  // has a backup holding its writes whatever the window, and the window's length is not what
  // this file checks. It keeps ~45 s off CI.
  const r = await cli(["drill", "--stack", "prod", "--keep", "--write-seconds", "30", "--json"], 1_500_000);
  stderr = r.stderr;
  expect(r.stdout, `drill printed no report (exit ${r.status}):\n${r.stderr.slice(-6000)}`).not.toBe("");
  report = JSON.parse(r.stdout) as DrillReport;
  expect({ status: r.status, failures: report.failures }, r.stderr.slice(-6000)).toEqual({ status: 0, failures: [] });
}, 1_560_000);

afterAll(async () => {
  for (const stack of [RECOVERY_STACK, LOCAL_STACK]) await cli(["destroy", "--stack", stack, "--force", "--quiet"], 300_000);
  await setNodeLabels(prodLabels, true);
}, 700_000);

describe("kryonix-dr drill --stack prod (real Swarm, RGW, PostgreSQL; the prod stack's services)", () => {
  it("backed up, destroyed and restored all nine prod services, every acknowledged write back, each within its own RTO and RPO", () => {
    expect(report.stack).toBe("prod");
    expect(report.services.map((s) => s.service).sort()).toEqual(prod.map((s) => s.name).sort());
    for (const s of report.services) {
      expect({ service: s.service, missing: s.missing.length, corrupted: s.corrupted.length, rpoMet: s.rpoMet, rtoMet: s.rtoMet }).toEqual({ service: s.service, missing: 0, corrupted: 0, rpoMet: true, rtoMet: true });
      expect(s.expected, `${s.service}: writes expected back`).toBeGreaterThan(0);
      expect(s.restoredFromBackup, `${s.service} restored from a backup`).toBeTruthy();
    }
    for (const name of prod.map((s) => s.name)) {
      expect(report.backups.some((b) => b.service === name && b.status === "completed" && b.type !== "wal"), `${name}: a completed backup`).toBe(true);
    }
    expect(stderr).toMatch(/placement: this swarm node carries kryonix\.postgresql=true, .*kryonix\.prometheus=true/);
  });

  it("placed every protected service and its sidecar by prod's own constraints", async () => {
    const services = await docker.request<Array<{ Spec: { Name: string; Labels: Record<string, string>; TaskTemplate: { Placement?: { Constraints?: string[] } } } }>>("GET", "/services");
    for (const p of prod.filter((x) => x.placement?.length)) {
      const ofIt = services.filter((s) => s.Spec.Labels[LABELS.service] === p.name || s.Spec.Labels[LABELS.protects] === p.name);
      expect(ofIt.length, `${p.name}: service and sidecar`).toBeGreaterThanOrEqual(2);
      for (const s of ofIt) for (const c of p.placement!) expect(s.Spec.TaskTemplate.Placement?.Constraints ?? [], s.Spec.Name).toContain(c);
    }
  });

  it("backed Prometheus up by TSDB snapshot (none left in its volume), and the restored TSDB holds its samples", async () => {
    // A completed backup of prometheus is a snapshot the admin API took (it must answer 2xx).
    expect(stderr).toMatch(/backup completed: prometheus/);
    const rep = report.services.find((s) => s.service === "prometheus")!;
    // The drill judged it by its own samples (self-scrapes a query had returned before the backup).
    expect(rep.engine).toBe("tsdb");
    expect(rep.expected).toBeGreaterThan(0);
    // Each snapshot is removed from Prometheus's volume once uploaded: none is left. The sidecar
    // keeps backing up every minute, so one may exist while a run uploads it:
    // every snapshot seen must be gone within 2 minutes, and no more than one exists at a time.
    const snaps = async () => {
      const r = await dockerExec(await recovered("prometheus"), ["sh", "-c", "ls -A /prometheus/snapshots 2>/dev/null || true"]);
      return r.stdout.split("\n").map((x) => x.trim()).filter(Boolean);
    };
    const seen = await snaps();
    expect(seen.length, `snapshots in the volume: ${seen.join(", ")}`).toBeLessThanOrEqual(1);
    let left = seen;
    for (let i = 0; i < 60 && left.length; i++) {
      await new Promise((res) => setTimeout(res, 2000));
      const now = await snaps();
      left = seen.filter((x) => now.includes(x));
    }
    expect(left, "snapshots still in Prometheus's volume 2 minutes later").toEqual([]);
    const before = Math.floor(new Date(rep.recoveryPoint!).getTime() / 1000) - 20;
    const id = await recovered("prometheus");
    let out = "";
    for (let i = 0; i < 30; i++) {
      const r = await dockerExec(id, ["promtool", "query", "instant", "--time", String(before), "http://localhost:9090", 'up{job="prometheus"}']);
      out = r.stdout + r.stderr;
      if (r.code === 0 && /=> 1 @/.test(out)) break;
      await new Promise((res) => setTimeout(res, 2000));
    }
    expect(out).toMatch(/=> 1 @/);
  });

  it("restored Grafana's SQLite database, written to during every copy, passing PRAGMA integrity_check", async () => {
    // The recovered stand-in goes on writing: the check waits for its write lock like any reader
    // (without a busy timeout, sqlite3 exited 5, "database is locked", in cold run 37).
    const r = await dockerExec(await recovered("grafana"), ["sqlite3", "-cmd", ".timeout 10000", "/var/lib/grafana/grafana.db", "PRAGMA integrity_check; SELECT count(*) > 0 FROM dashboard_version;"]);
    expect({ code: r.code, out: r.stdout.trim().split("\n") }).toEqual({ code: 0, out: ["ok", "1"] });
  });

  it("restored Traefik's acme.json with its mode (0600) and Nextcloud out of maintenance mode", async () => {
    const t = await dockerExec(await recovered("traefik"), ["stat", "-c", "%a", "/certs/acme.json"]);
    expect(t.stdout.trim()).toBe("600");
    // Copied in the maintenance mode the backup turned on; the restore turned it off again. The
    // recovered stack's sidecar goes on backing Nextcloud up (a full every minute), each run
    // turning maintenance on for its copy: the file is read at a moment no run overlaps (no run
    // in flight before the read, none started by the end of it). Cold run 40 read it mid-run.
    const platform = readPlatform();
    const db = new pg.Client({ host: platform.catalog.host, port: platform.catalog.port, user: platform.catalog.user, password: platform.catalog.password, database: "kryonix_dr" });
    await db.connect();
    const runs = async () =>
      (await db.query<{ n: string; inflight: string }>("SELECT count(*)::text AS n, count(*) FILTER (WHERE backup_status IN ('pending', 'running'))::text AS inflight FROM backup_management WHERE service_name = 'nextcloud'")).rows[0]!;
    let config = "";
    try {
      for (let i = 0; i < 30 && !config; i++) {
        const before = await runs();
        const n = await dockerExec(await recovered("nextcloud"), ["cat", "/var/www/html/config/config.php"]);
        const after = await runs();
        if (before.inflight === "0" && after.n === before.n) config = n.stdout;
        else await new Promise((r) => setTimeout(r, 1000));
      }
    } finally {
      await db.end();
    }
    expect(config, "no moment in 30 tries without a backup of nextcloud in flight").not.toBe("");
    expect(config).toContain("'maintenance' => false");
    expect(config).not.toContain("kdr-agent");
  });
});
