/**
 * The fast path on the real local platform (Docker Swarm, both RGW regions, PostgreSQL 15):
 * `kryonix-dr drill --disaster failover --keep --json`: warm standbys of the local stack's
 * PostgreSQL and Redis (the local-dr stack) follow the primaries, an activation while the
 * primaries answer is refused, the primary region is lost, the local-dr stack is deployed with
 * kryonix-dr:active true, and writes through the same names resume. Then the kept stacks are
 * checked where they run: the promoted services, the catalog rows, the standby agent's commands
 * in the agent image.
 */
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runAsync } from "../support/spawn.js";
import { readPlatform } from "../../local/platform.js";
import { DEPLOYMENTS_DIR, readState } from "../../local/deployer.js";
import { LABELS } from "../../contract/index.js";
import { docker, dockerExec, waitForTask } from "../../local/drill/docker.js";
import { FAILOVER_TARGET_SECONDS, LOCAL_DR_STACK, type FailoverReport } from "../../local/drill/failover.js";
import { LOCAL_STACK } from "../../local/drill/drill.js";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";

const ROOT = join(__dirname, "..", "..");
const CLI = join(ROOT, "bin", "kryonix-dr.mjs");
const platform = readPlatform();

function cli(args: string[], timeoutMs: number) {
  return runAsync(process.execPath, [CLI, ...args], { timeoutMs, env: process.env, cwd: ROOT });
}

describe("kryonix-dr drill --disaster failover (real Swarm, both RGW regions, PostgreSQL)", () => {
  let report: FailoverReport;
  let stderr = "";

  beforeAll(async () => {
    const r = await cli(["drill", "--disaster", "failover", "--keep", "--json"], 890_000);
    stderr = r.stderr;
    expect(r.stdout, `drill printed no report (exit ${r.status}):\n${r.stderr.slice(-6000)}`).not.toBe("");
    report = JSON.parse(r.stdout) as FailoverReport;
    expect({ status: r.status, failures: report.failures }, r.stderr.slice(-4000)).toEqual({ status: 0, failures: [] });
  }, 900_000);

  afterAll(async () => {
    for (const stack of [LOCAL_DR_STACK, LOCAL_STACK]) await cli(["destroy", "--stack", stack, "--force", "--quiet"], 300_000);
    rmSync(join(DEPLOYMENTS_DIR, "drill.json"), { force: true });
  }, 600_000);

  it("ran every step of runbook §9 in order, and brought the primary region back", async () => {
    const steps = [
      "deploy the local stack",
      "write through the stable names",
      "wait for the DR region's copies",
      `deploy the ${LOCAL_DR_STACK} stack: warm standbys`,
      "the standbys follow the primaries",
      "activation refused while the primary answers",
      "disaster: lose the primary region",
      `fail over: deploy ${LOCAL_DR_STACK} with kryonix-dr:active true`,
      "writes resume through the same names",
      "the rest of the primary region gone",
      "verify the promoted services",
      "the DR sidecars' first backups of the promoted services, verified",
      "bring the primary region back",
      "replication reversed: the promoted services' DR backups reach the primary region",
    ];
    let at = -1;
    for (const p of steps) {
      const i = stderr.indexOf(`== ${p}`);
      expect(i, p).toBeGreaterThan(at);
      at = i;
    }
    expect(stderr).toMatch(/refused, nothing moved: the primary still answers \(PostgreSQL at kdr-local-postgresql accepts connections and is a primary\)|refused, nothing moved: the primary still answers \(Redis at kdr-local-redis answers PING\)/);
    expect((await fetch(platform.regions.primary.loopbackEndpoint)).status).toBeLessThan(500);
    // Runbook §9a: status shows each standby following within its RPO, from its follower's report.
    expect(stderr).toMatch(/postgresql: kryonix-dr status: the PostgreSQL standby kdr-local-dr-postgresql of 'postgresql' \(\S+\) streams from \S+, \d+ s \/ \d+ bytes behind \(RPO \d+ s\)/);
    expect(stderr).toMatch(/redis: kryonix-dr status: the Redis standby kdr-local-dr-redis of 'redis' \(\S+\) streams from kdr-local-redis, \d+ s \/ \d+ bytes behind \(RPO \d+ s\)/);
  });

  it("writes through the same names resumed within 60 s of the loss, and nothing acknowledged beyond the RPO before it was lost", () => {
    expect(report.services.map((s) => s.service).sort()).toEqual(["postgresql", "redis"]);
    for (const s of report.services) {
      expect(s.failoverSeconds, s.service).not.toBeNull();
      expect(s.failoverSeconds!, s.service).toBeLessThan(FAILOVER_TARGET_SECONDS);
      expect(s.acknowledgedBeforeLoss, s.service).toBeGreaterThan(20);
      expect(s.missingBeyondRpo, s.service).toEqual([]);
      expect(s.writesAfterFailover, s.service).toBeGreaterThan(0);
      expect(s.missingAfterFailover, s.service).toEqual([]);
      expect(s.dataLossSeconds!, s.service).toBeLessThanOrEqual(s.rpoTargetSeconds);
      expect(s.drBackup?.verifyStatus, s.service).toBe("passed");
      // Replication reversed: that backup reached the primary region once it returned.
      expect(s.reversedAfterSeconds, s.service).not.toBeNull();
      expect(s.reversedAfterSeconds, s.service).toBeDefined();
    }
    // Both follow their primaries over the network (PostgreSQL streams, the archived WAL its
    // fallback): they lose at most the last moments.
    expect(report.services.find((s) => s.service === "postgresql")!.followedBefore).toMatch(/^streaming from \S+/);
    for (const s of report.services) expect(s.dataLossSeconds!, s.service).toBeLessThan(10);
  });

  it("the promoted services carry the stable names and the role label, the followers are gone, the DR sidecars run", async () => {
    const state = readState(LOCAL_DR_STACK, DEPLOYMENTS_DIR)!;
    expect(state.status).toBe("deployed");
    const services = await docker.request<Array<{ Spec: { Name: string; Labels: Record<string, string>; TaskTemplate: { Networks?: Array<{ Aliases?: string[] }>; ContainerSpec: { Args?: string[] } } } }>>("GET", "/services");
    const byName = (n: string) => services.find((s) => s.Spec.Name === n);
    for (const n of ["postgresql", "redis"]) {
      const s = byName(`kdr-local-dr-${n}`)!;
      expect(s.Spec.Labels[LABELS.role]).toBe("promoted");
      expect(s.Spec.TaskTemplate.Networks?.flatMap((x) => x.Aliases ?? [])).toEqual([n]);
      expect(byName(`kdr-local-dr-${n}-backup`)).toBeDefined();
    }
    expect(byName("kdr-local-dr-postgresql-follower")).toBeUndefined();
    expect(byName("kdr-local-dr-redis-follower")).toBeUndefined();
    expect(byName("kdr-local-dr-redis")!.Spec.TaskTemplate.ContainerSpec.Args ?? []).toEqual([]);
    const pgTask = await waitForTask("kdr-local-dr-postgresql", 60_000, false);
    const r = await dockerExec(pgTask, ["psql", "-X", "-U", "postgres", "-At", "-c", "SELECT pg_is_in_recovery(), (SELECT timeline_id FROM pg_control_checkpoint())"]);
    expect(r.stdout.trim()).toMatch(/^f\|([2-9]|\d\d+)$/);
    // The primary's password the standby streamed with went with the promotion.
    const pass = await dockerExec(pgTask, ["sh", "-c", 'ls -A "$PGDATA"']);
    expect(pass.stdout).toContain("PG_VERSION");
    expect(pass.stdout).not.toContain("kdr_standby_pgpass");
  });

  it("recorded each activation and the drill in disaster_recovery_log", async () => {
    const db = new pg.Client({ host: platform.catalog.host, port: platform.catalog.port, user: platform.catalog.user, password: platform.catalog.password, database: "kryonix_dr" });
    await db.connect();
    try {
      const { rows } = await db.query<{ incident_type: string; affected_services: string[]; recovery_status: string; phase_timings: Record<string, number> }>(
        "SELECT incident_type, affected_services, recovery_status, phase_timings FROM disaster_recovery_log WHERE recovery_id = ANY($1::uuid[]) ORDER BY initiated_at",
        [[...report.activations.map((a) => a.recoveryId), report.recoveryLog!.recoveryId]],
      );
      expect(rows.filter((x) => x.incident_type === "failover").map((x) => x.affected_services[0]).sort()).toEqual(["postgresql", "redis"]);
      for (const a of rows.filter((x) => x.incident_type === "failover")) {
        expect(a.recovery_status).toBe("completed");
        expect(Object.keys(a.phase_timings).sort()).toEqual(["catch_up", "primary_check", "promote"]);
      }
      expect(rows.filter((x) => x.incident_type === "drill")).toMatchObject([{ affected_services: ["postgresql", "redis"], recovery_status: "completed" }]);
    } finally {
      await db.end();
    }
  });

  it("runbook §9b, as written: the promoted PostgreSQL is out of recovery, and deploying again with active true changes nothing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kdrtest-failover-"));
    try {
      const check = await runAsync("bash", ["-c", "docker exec $(docker ps -qf 'name=^kdr-local-dr-postgresql\\.') psql -U postgres -Atc 'SELECT pg_is_in_recovery()'"], { timeoutMs: 30_000 });
      expect(check.stdout.trim(), check.stderr).toBe("f");
      const again = await runAsync("bash", ["-c", `echo '{"active": {"value": true}}' > ${dir}/active.json && npx kryonix-dr deploy --stack local-dr --platform --config-file ${dir}/active.json`], { timeoutMs: 300_000, cwd: ROOT });
      expect(again.status, again.stderr.slice(-3000)).toBe(0);
      expect(again.stdout).toMatch(/^updated stack local-dr in place: \d+ unchanged, 0 updated, 0 replaced, 0 created, 0 deleted;/m);
      // The failover workflow's script, with the local engine: the same deployment, nothing left to do.
      const summary = join(dir, "summary.md");
      const wf = await runAsync("bash", [join(ROOT, "scripts", "ci", "failover.sh"), "--stack", "local-dr", "--force", "false"], { timeoutMs: 300_000, cwd: ROOT, env: { ...process.env, KDR_CI_ENGINE: "local", GITHUB_STEP_SUMMARY: summary } });
      expect(wf.status, wf.stderr.slice(-3000)).toBe(0);
      expect(readFileSync(summary, "utf8")).toMatch(/^### Failed over: `local-dr` is the active region \(local deployer\)\n[\s\S]*updated stack local-dr in place: \d+ unchanged, 0 updated/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 320_000);
});
