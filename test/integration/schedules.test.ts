/**
 * #13: every schedule the config accepts is honoured, for each engine. A stack of its own runs
 * PostgreSQL, Redis and a volume service with their sidecars on seconds-scale versions of the
 * prod stack's schedules (prod: fulls daily, Redis incremental every 5 min, volumes hourly; here
 * fulls every minute at second 5, incrementals every 20 s), and the drill cron verifying every
 * 30 s. After a window of a little over two minutes, each firing of each schedule has its run in the
 * catalog (started within seconds of the firing), completed, and verified.
 */
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Cron } from "croner";
import yaml from "js-yaml";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runAsync } from "../support/spawn.js";
import { readPlatform } from "../../local/platform.js";
import { waitForTask } from "../../local/drill/docker.js";

const ROOT = join(__dirname, "..", "..");
const CLI = join(ROOT, "bin", "kryonix-dr.mjs");
const STACK = "sched";
const PREFIX = "kdr-sched";
const WINDOW_MS = 130_000;
const FULL = "5 * * * * *";
const INCREMENTAL = "*/20 * * * * *";
const CASES: Array<[string, string, string]> = [
  ["postgresql", "full", FULL],
  ["redis", "full", FULL],
  ["redis", "incremental", INCREMENTAL],
  ["files", "full", FULL],
  ["files", "incremental", INCREMENTAL],
];
const project = mkdtempSync(join(tmpdir(), "kdrtest-sched-"));
const cli = (args: string[], timeoutMs = 600_000) => runAsync(process.execPath, [CLI, ...args, "--project-dir", project], { timeoutMs, cwd: ROOT });

type Row = { service_name: string; backup_type: string; backup_status: string; created_at: Date; verify_status: string | null };
let rows: Row[] = [];
let from = 0;
let to = 0;

beforeAll(async () => {
  writeFileSync(join(project, "Pulumi.yaml"), readFileSync(join(ROOT, "Pulumi.yaml"), "utf8").replace(/^main: (.+)$/m, (_m, main: string) => `main: ${join(ROOT, main)}`));
  symlinkSync(join(ROOT, "bin"), join(project, "bin"));
  const local = yaml.load(readFileSync(join(ROOT, "Pulumi.local.yaml"), "utf8")) as { config: Record<string, unknown> };
  const c = local.config;
  const schedules = { full: FULL, incremental: INCREMENTAL };
  c["kryonix-dr:namePrefix"] = PREFIX;
  c["kryonix-dr:services"] = [
    // PostgreSQL's incremental is its continuous WAL; its schedule is the fulls alone.
    { name: "postgresql", engine: "postgres", tier: "critical", user: "postgres", walSwitchSeconds: 10, schedules: { full: FULL, incremental: "" }, retention: { walDays: 30 } },
    { name: "redis", engine: "redis", tier: "critical", schedules },
    { name: "files", engine: "volume", tier: "important", dataPath: "/data", schedules, placement: ["node.role == manager"] },
  ];
  c["kryonix-dr:catalog"] = { ...(c["kryonix-dr:catalog"] as object), backup: false };
  c["kryonix-dr:maintenance"] = { verify: "*/30 * * * * *" };
  delete c["kryonix-dr:monitoring"];
  writeFileSync(join(project, `Pulumi.${STACK}.yaml`), yaml.dump(local));
  const d = await cli(["deploy", "--stack", STACK, "--platform", "--quiet"]);
  expect(d.status, d.stderr).toBe(0);
  for (const s of ["postgresql", "redis", "files"]) await waitForTask(`${PREFIX}-${s}-backup`, 180_000);
  // Something to back up in the volume (an empty one is skipped, not backed up).
  const files = await waitForTask(`${PREFIX}-files`, 180_000, false);
  const written = new Date();
  await runAsync("docker", ["exec", files, "sh", "-c", "echo page > /data/index.md"], { timeoutMs: 30_000 });
  const p = readPlatform().catalog;
  const db = new pg.Client({ host: p.host, port: p.port, user: p.user, password: p.password, database: "kryonix_dr" });
  await db.connect();
  // The window opens in the steady state: after each service's first full completed. A first
  // full also creates the restic repository and, on a loaded machine, once outlasted the next
  // incremental firing, which then waited for the service's lock (cold run 17).
  for (let i = 0; ; i++) {
    const done = await db.query("SELECT DISTINCT service_name FROM backup_management WHERE service_name IN ('postgresql', 'redis', 'files') AND backup_type = 'full' AND backup_status = 'completed' AND created_at >= $1", [written]);
    if (done.rowCount === 3) break;
    if (i > 90) throw new Error(`no first full of every service within 3 min: ${done.rows.map((r) => r.service_name).join(", ")}`);
    await new Promise((r) => setTimeout(r, 2000));
  }
  from = Date.now() + 2_000;
  to = from + WINDOW_MS;
  // Then time for the last firing's run (within 15 s) and its verify (every 30 s) to finish: on
  // a loaded machine a run that ends just after a verify began waits for the next one, and a verify
  // still busy at the next firing skips it; so wait until every firing's run is judged, up to 3 min.
  await new Promise((r) => setTimeout(r, WINDOW_MS + 20_000));
  for (const deadline = Date.now() + 180_000; ; ) {
    rows = (await db.query<Row>("SELECT service_name, backup_type, backup_status, created_at, verify_status FROM backup_management WHERE service_name IN ('postgresql', 'redis', 'files') AND created_at >= $1 ORDER BY created_at", [new Date(from)])).rows;
    const judged = CASES.every(([service, type, pattern]) => firings(pattern).every((f) => {
      const run = runOf(service, type, f);
      return run && (run.backup_status === "failed" || run.verify_status !== null);
    }));
    if (judged || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 5000));
  }
  await db.end();
}, 900_000);

afterAll(async () => {
  await runAsync(process.execPath, [CLI, "destroy", "--stack", STACK, "--force", "--quiet"], { timeoutMs: 600_000, cwd: ROOT });
  rmSync(project, { recursive: true, force: true });
}, 660_000);

/** The moments a 6-field cron fires in [from, to]. */
function firings(pattern: string): Date[] {
  const out: Date[] = [];
  const cron = new Cron(pattern, { paused: true });
  let next = cron.nextRun(new Date(from - 1));
  while (next && next.getTime() <= to) {
    out.push(next);
    next = cron.nextRun(next);
  }
  return out;
}

/**
 * The run of a firing: it starts when its schedule fires (or, when a run of the other schedule
 * holds the service's lock, right after it).
 */
function runOf(service: string, type: string, f: Date): Row | undefined {
  return rows.find((r) => r.service_name === service && r.backup_type === type && r.created_at.getTime() >= f.getTime() - 1000 && r.created_at.getTime() < f.getTime() + 15_000);
}

describe("every schedule is honoured, each run a verified backup (real Swarm, RGW, PostgreSQL, Redis)", () => {
  it.each(CASES)("%s %s (%s): one run per firing, each completed and verified", (service, type, pattern) => {
    const fired = firings(pattern);
    expect(fired.length).toBeGreaterThanOrEqual(type === "full" ? 2 : 6);
    const runs = rows.filter((r) => r.service_name === service && r.backup_type === type);
    for (const f of fired) {
      const run = runOf(service, type, f);
      expect(run, `${service} ${type} fired at ${f.toISOString()}: runs ${runs.map((r) => r.created_at.toISOString()).join(", ")}`).toBeDefined();
      expect(run!.backup_status, `${service} ${type} of ${f.toISOString()}`).toBe("completed");
      expect(run!.verify_status, `${service} ${type} of ${f.toISOString()} verified`).toBe("passed");
    }
  });
});
