/**
 * The fast path on the real local platform (Docker Swarm, both RGW regions, PostgreSQL 15):
 * `kryonix-dr drill --disaster failover --keep --json`: warm standbys of the local stack's
 * PostgreSQL and Redis (the local-dr stack) follow the primaries, an activation while the
 * primaries answer is refused, the primary region is lost, the local-dr stack is deployed with
 * kryonix-dr:active true, and writes through the same names resume; then the way back: the
 * primary region's services return as standbys of the promoted ones (kryonix-dr:failback), switch
 * over, and the local-dr stack returns to standbys. Then the kept stacks are checked where they
 * run: the returned services and the new DR standbys, the kept volumes, the catalog rows.
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
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
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
      "runbook §9b's checks: the promoted PostgreSQL is out of recovery, and deploying again with active true changes nothing",
      "bring the primary region back",
      "replication reversed: the promoted services' DR backups reach the primary region",
      // Runbook §9c: the way back.
      "failback: deploy the local stack with kryonix-dr:failback",
      "the returning standbys follow the promoted services",
      "failback: switch (kryonix-dr:failback.switch true",
      "the returned PostgreSQL's first base, now, copied to the DR region",
      `the ${LOCAL_DR_STACK} stack's services become standbys again (kryonix-dr:active false, failover.generation 2)`,
      "the DR region's new standbys follow the returned services",
      "verify the returned services",
      "this stack's sidecars back the returned services up",
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
    // Runbook §9c: status shows the returning standbys following the promoted services, then the DR region's new ones following the returned services.
    // The returning ones follow what answers to the stable name: the promoted service, the only one holding it until the switch.
    expect(stderr).toMatch(/postgresql: kryonix-dr status: the PostgreSQL standby kdr-local-postgresql-g2 of 'postgresql' \(\S+\) streams from postgresql, /);
    expect(stderr).toMatch(/redis: kryonix-dr status: the Redis standby kdr-local-redis-g2 of 'redis' \(\S+\) streams from redis, /);
    expect(stderr).toMatch(/postgresql: kryonix-dr status: the PostgreSQL standby kdr-local-dr-postgresql-g2 of 'postgresql' \(\S+\) streams from kdr-local-postgresql-g2, /);
    expect(stderr).toMatch(/redis: kryonix-dr status: the Redis standby kdr-local-dr-redis-g2 of 'redis' \(\S+\) streams from kdr-local-redis-g2, /);
  });

  it("failed back: every write the promoted services held and every one acknowledged meanwhile is on the returned services, which are backed up again", () => {
    const fb = report.failback!;
    expect(fb.services.map((s) => s.service).sort()).toEqual(["postgresql", "redis"]);
    for (const s of fb.services) {
      expect(s.returned, s.service).toBe(`kdr-local-${s.service}-g2`);
      expect(s.missing, s.service).toEqual([]);
      expect(s.writesDuring, s.service).toBeGreaterThan(20);
      expect(s.longestWriteGapSeconds, s.service).not.toBeNull();
      expect(s.handover?.seconds, s.service).not.toBeNull();
      expect(Object.keys(s.handover!.phases).sort(), s.service).toEqual(["catch_up", "fence", "promote"]);
      expect(s.backedUpAfterSeconds, s.service).not.toBeNull();
      expect(s.drStandby, s.service).not.toBeNull();
    }
    expect(fb.services.find((s) => s.service === "postgresql")!.followedBefore).toBe("streaming from postgresql");
    expect(fb.services.find((s) => s.service === "postgresql")!.drStandby).toBe("streaming from kdr-local-postgresql-g2");
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

  it("after the way back: the returned services carry the stable names, the DR region runs new standbys of them, the volumes of before are kept", async () => {
    expect(readState(LOCAL_DR_STACK, DEPLOYMENTS_DIR)!.status).toBe("deployed");
    const services = await docker.request<Array<{ Spec: { Name: string; Labels: Record<string, string>; TaskTemplate: { Networks?: Array<{ Aliases?: string[] }>; ContainerSpec: { Args?: string[] } } } }>>("GET", "/services");
    const byName = (n: string) => services.find((s) => s.Spec.Name === n);
    for (const n of ["postgresql", "redis"]) {
      const back = byName(`kdr-local-${n}-g2`)!;
      expect(back.Spec.Labels[LABELS.role]).toBe("promoted");
      expect(back.Spec.TaskTemplate.Networks?.flatMap((x) => x.Aliases ?? [])).toEqual([n]);
      expect(byName(`kdr-local-${n}-g2-follower`)).toBeUndefined();
      expect(byName(`kdr-local-${n}-backup`)).toBeDefined();
      // The DR region: the promoted services of the outage gone, new standbys without the stable name.
      expect(byName(`kdr-local-dr-${n}`)).toBeUndefined();
      expect(byName(`kdr-local-dr-${n}-backup`)).toBeUndefined();
      const standby = byName(`kdr-local-dr-${n}-g2`)!;
      expect(standby.Spec.Labels[LABELS.role]).toBe("standby");
      expect(standby.Spec.TaskTemplate.Networks?.flatMap((x) => x.Aliases ?? [])).toEqual([]);
    }
    expect(byName("kdr-local-redis-g2")!.Spec.TaskTemplate.ContainerSpec.Args ?? []).toEqual([]);
    expect(byName("kdr-local-dr-redis-g2")!.Spec.TaskTemplate.ContainerSpec.Args).toEqual(["--replicaof", "kdr-local-redis-g2", "6379"]);
    const pgTask = await waitForTask("kdr-local-postgresql-g2", 60_000, false);
    const r = await dockerExec(pgTask, ["psql", "-X", "-U", "postgres", "-At", "-c", "SELECT pg_is_in_recovery(), (SELECT timeline_id FROM pg_control_checkpoint())"]);
    // Promoted twice: at the failover, and at the switch back.
    expect(r.stdout.trim()).toMatch(/^f\|([3-9]|\d\d+)$/);
    const pass = await dockerExec(pgTask, ["sh", "-c", 'ls -A "$PGDATA"']);
    expect(pass.stdout).toContain("PG_VERSION");
    expect(pass.stdout).not.toContain("kdr_standby_pgpass");
    // The data of before each switch is kept, not deleted with the services that are no longer declared.
    const volumes = (await docker.request<{ Volumes: Array<{ Name: string }> }>("GET", "/volumes")).Volumes.map((v) => v.Name);
    for (const v of ["kdr-local-postgresql-data", "kdr-local-redis-data", "kdr-local-dr-postgresql-data", "kdr-local-dr-redis-data"]) expect(volumes, v).toContain(v);
    const kept = readState(LOCAL_STACK, DEPLOYMENTS_DIR)!.resources.filter((e) => e.record.retained === true).map((e) => e.id);
    expect(kept.sort()).toEqual(["kdr-local-postgresql-data", "kdr-local-redis-data"]);
    expect(stderr).toMatch(/kept volume kdr-local-postgresql-data \(\S+\): it holds a service's data and is no longer declared; remove it once you no longer need it: docker volume rm kdr-local-postgresql-data/);
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
      const back = await db.query<{ affected_services: string[]; recovery_status: string; phase_timings: Record<string, number> }>(
        "SELECT affected_services, recovery_status, phase_timings FROM disaster_recovery_log WHERE recovery_id = ANY($1::uuid[])",
        [report.failback!.services.map((s) => s.handover!.recoveryId)],
      );
      expect(back.rows.map((x) => x.affected_services[0]).sort()).toEqual(["postgresql", "redis"]);
      for (const b of back.rows) expect({ status: b.recovery_status, phases: Object.keys(b.phase_timings).sort() }).toEqual({ status: "completed", phases: ["catch_up", "fence", "promote"] });
    } finally {
      await db.end();
    }
  });

  it("runbook §9c, as written: the returned PostgreSQL is the primary and the DR one a standby, deploying again changes nothing, and the failover workflow refuses while the primary answers", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kdrtest-failover-"));
    try {
      const inRecovery = (name: string) => runAsync("bash", ["-c", `docker exec $(docker ps -qf 'name=^${name}\\.') psql -U postgres -Atc 'SELECT pg_is_in_recovery()'`], { timeoutMs: 30_000 });
      const back = await inRecovery("kdr-local-postgresql-g2");
      expect(back.stdout.trim(), back.stderr).toBe("f");
      const standby = await inRecovery("kdr-local-dr-postgresql-g2");
      expect(standby.stdout.trim(), standby.stderr).toBe("t");
      const failback = { drStack: "local-dr", switch: true, generation: 2, standbys: [{ name: "postgresql", engine: "postgres" }, { name: "redis", engine: "redis" }] };
      writeFileSync(join(dir, "failback.json"), JSON.stringify({ failback: { value: failback } }));
      const again = await runAsync(process.execPath, [CLI, "deploy", "--stack", "local", "--platform", "--config-file", join(dir, "failback.json")], { timeoutMs: 300_000, cwd: ROOT });
      expect(again.status, again.stderr.slice(-3000)).toBe(0);
      expect(again.stdout).toMatch(/^updated stack local in place: \d+ unchanged, 0 updated, 0 replaced, 0 created, 0 deleted;/m);
      // The failover workflow's script, with the local engine: with the primary answering, the activation refuses and nothing moves.
      const summary = join(dir, "summary.md");
      const wf = await runAsync("bash", [join(ROOT, "scripts", "ci", "failover.sh"), "--stack", "local-dr", "--force", "false"], { timeoutMs: 300_000, cwd: ROOT, env: { ...process.env, KDR_CI_ENGINE: "local", GITHUB_STEP_SUMMARY: summary } });
      expect(wf.status).not.toBe(0);
      expect(wf.stderr).toMatch(/the primary still answers/);
      expect(wf.stderr).toMatch(/the failover of 'local-dr' stopped; the activation's message above says why/);
      const services = await docker.request<Array<{ Spec: { Name: string; Labels: Record<string, string> } }>>("GET", "/services");
      for (const n of ["postgresql", "redis"]) expect(services.find((s) => s.Spec.Name === `kdr-local-dr-${n}-g2`)?.Spec.Labels[LABELS.role], n).toBe("standby");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 620_000);
});
