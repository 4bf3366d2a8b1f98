/**
 * The dr stack's warm standbys, inactive and active, as `kryonix-dr plan --json` shows them (the
 * program run as a user runs it, the primary stack planned for its StackReference): what runs in
 * each state, what waits for the promotion, and the config that is refused.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { runAsync } from "../../support/spawn.js";
import { AGENT_ENV, LABELS } from "../../../contract/index.js";

const ROOT = join(__dirname, "..", "..", "..");
type Planned = { type: string; name: string; custom: boolean; inputs: any; dependsOn?: string[] };

// Each plan is a CLI process, awaited (a synchronous spawn blocks this worker's RPC with vitest,
// which times out under load); on a loaded machine one takes over a minute.
vi.setConfig({ testTimeout: 240_000, hookTimeout: 240_000 });

async function plan(stack: string, config: Record<string, unknown> = {}): Promise<{ code: number | null; resources: Planned[]; stderr: string }> {
  const dir = mkdtempSync(join(tmpdir(), "kdr-dr-plan-"));
  const file = join(dir, "config.json");
  writeFileSync(file, JSON.stringify(Object.fromEntries(Object.entries(config).map(([k, v]) => [k, { value: v }]))));
  const r = await runAsync(process.execPath, [join(ROOT, "bin", "kryonix-dr.mjs"), "plan", "--stack", stack, "--json", "--policy", "--config-file", file], { timeoutMs: 180_000 }).finally(() =>
    rmSync(dir, { recursive: true, force: true }),
  );
  return { code: r.status, resources: r.status === 0 ? (JSON.parse(r.stdout) as Planned[]) : [], stderr: r.stderr };
}
const labels = (p: Planned): Record<string, string> => Object.fromEntries(((p.inputs.labels ?? []) as Array<{ label: string; value: string }>).map((l) => [l.label, l.value]));
const services = (ps: Planned[]) => ps.filter((p) => p.type === "docker:index/service:Service");
const containers = (ps: Planned[]) => ps.filter((p) => p.type === "docker:index/container:Container");
const byService = (ps: Planned[], name: string) => services(ps).find((p) => p.inputs.name === name)!;
const envOf = (p: Planned): Record<string, string> => p.inputs.taskSpec.containerSpec.env;

describe("dr stack, inactive (kryonix-dr:active false): warm standbys follow the primary", () => {
  let r!: Awaited<ReturnType<typeof plan>>;
  beforeAll(async () => {
    r = await plan("dr");
  });
  it("plans, and the policies pass", () => {
    expect(r.stderr).toContain("policies: 0 violation(s)");
    expect(r.code).toBe(0);
  });

  it("seeds each PostgreSQL standby once from the DR copies, and stages the archived WAL beside it (its fallback feed)", () => {
    expect(containers(r.resources).map((c) => c.name).sort()).toEqual(["standby-postgresql-seed", "standby-timescaledb-seed"]);
    const seed = containers(r.resources).find((c) => c.name === "standby-postgresql-seed")!;
    expect(seed.inputs.command).toEqual(["standby", "seed", "--target", "/var/lib/postgresql/data"]);
    expect(seed.inputs.mounts).toEqual([{ type: "volume", source: "kdr-dr-postgresql-data", target: "/var/lib/postgresql/data" }]);
    expect(seed.inputs.envs).toContain(`${AGENT_ENV.s3Endpoint}=https://s3.dr.kryonix.internal:9000`);
    const follower = byService(r.resources, "kdr-dr-postgresql-follower");
    expect(follower.inputs.taskSpec.containerSpec.commands.slice(2)).toEqual(["standby", "follow", "--target", "/var/lib/postgresql/data"]);
    expect(envOf(follower)[AGENT_ENV.targetHost]).toBe("kdr-dr-postgresql");
    expect(follower.inputs.taskSpec.containerSpec.mounts[0].source).toBe("kdr-dr-postgresql-data");
    // Credentials as Swarm secrets, never env.
    expect(Object.values(envOf(follower)).join(" ")).not.toContain("[secret]");
    expect(follower.inputs.taskSpec.containerSpec.secrets.map((s: { fileName: string }) => s.fileName).sort()).toEqual([
      "kdr-age-identity",
      "kdr-catalog-password",
      "kdr-s3-access-key",
      "kdr-s3-secret-key",
      "kdr-target-password",
    ]);
  });

  it("watches the Redis replica's replication with a follower that holds the service's password and the catalog's, and no S3 key or age identity", () => {
    const follower = byService(r.resources, "kdr-dr-redis-follower");
    expect(labels(follower)[LABELS.role]).toBe("standby-follower");
    expect(follower.inputs.taskSpec.containerSpec.commands.slice(2)).toEqual(["standby", "follow"]);
    expect(follower.inputs.taskSpec.containerSpec.mounts).toEqual([]);
    expect(envOf(follower)[AGENT_ENV.primaryHost]).toBe("redis.primary.kryonix.internal");
    const files = (follower.inputs.taskSpec.containerSpec.secrets as Array<{ fileName: string }>).map((s) => s.fileName);
    expect(files).toContain("kdr-catalog-password");
    for (const f of files) expect(["kdr-catalog-password", "kdr-target-password"]).toContain(f);
  });

  it("runs the standbys without the stable names, and Redis as a replica of the primary", () => {
    for (const n of ["postgresql", "timescaledb", "redis"]) {
      const s = byService(r.resources, `kdr-dr-${n}`);
      expect(labels(s)[LABELS.role]).toBe("standby");
      expect(s.inputs.taskSpec.networksAdvanceds).toEqual([{ id: "kryonix-backend", aliases: [] }]);
    }
    expect(byService(r.resources, "kdr-dr-redis").inputs.taskSpec.containerSpec.args).toEqual(["--replicaof", "redis.primary.kryonix.internal", "6379"]);
  });

  it("declares no promotion, no sidecars of its own and no verification of new backups while inactive", () => {
    expect(containers(r.resources).filter((c) => c.name.endsWith("-activate"))).toEqual([]);
    expect(services(r.resources).filter((s) => labels(s)[LABELS.role] === "sidecar")).toEqual([]);
    const drill = services(r.resources).find((x) => labels(x)[LABELS.role] === "cron-drill-dr")!;
    expect((JSON.parse(envOf(drill)[AGENT_ENV.cronJobs]!) as Array<{ name: string }>).filter((j) => j.name.startsWith("verify-new-"))).toEqual([]);
    // Replication runs toward this region (the primary stack's); nothing runs back while inactive.
    expect(services(r.resources).filter((s) => labels(s)[LABELS.role] === "replicator")).toEqual([]);
  });
});

describe("dr stack, active (kryonix-dr:active true): the standbys promoted", () => {
  let r!: Awaited<ReturnType<typeof plan>>;
  beforeAll(async () => {
    r = await plan("dr", { active: true });
  });
  it("plans, and the policies pass (each promoted service has its sidecar)", () => {
    expect(r.stderr).toContain("policies: 0 violation(s)");
    expect(r.code).toBe(0);
  });

  it("promotes each standby in a run-once activation that the service change waits for", () => {
    for (const n of ["postgresql", "timescaledb", "redis"]) {
      const a = containers(r.resources).find((c) => c.name === `standby-${n}-activate`)!;
      // PostgreSQL: with the standby's data, where the primary's password for streaming is removed.
      if (n === "redis") {
        expect(a.inputs.command).toEqual(["standby", "activate"]);
        expect(a.inputs.mounts ?? []).toEqual([]);
      } else {
        expect(a.inputs.command).toEqual(["standby", "activate", "--target", "/var/lib/postgresql/data"]);
        expect(a.inputs.mounts).toEqual([expect.objectContaining({ type: "volume", source: `kdr-dr-${n}-data`, target: "/var/lib/postgresql/data" })]);
      }
      expect(a.inputs.attach).toBe(true);
      expect(a.inputs.envs).toContain(`${AGENT_ENV.targetHost}=kdr-dr-${n}`);
      const s = byService(r.resources, `kdr-dr-${n}`);
      expect(s.dependsOn).toContain(`standby-${n}-activate`);
      expect(labels(s)[LABELS.role]).toBe("promoted");
      // The stable name clients use moves to the promoted service.
      expect(s.inputs.taskSpec.networksAdvanceds).toEqual([{ id: "kryonix-backend", aliases: [n] }]);
    }
    expect(containers(r.resources).find((c) => c.name === "standby-postgresql-activate")!.inputs.envs).toContain(`${AGENT_ENV.primaryHost}=postgresql`);
    expect(byService(r.resources, "kdr-dr-redis").inputs.taskSpec.containerSpec.args).toEqual([]);
  });

  it("stops following and backs the promoted services up into the DR buckets", () => {
    expect(services(r.resources).filter((s) => labels(s)[LABELS.role] === "standby-follower")).toEqual([]);
    for (const n of ["postgresql", "timescaledb", "redis"]) {
      const sc = byService(r.resources, `kdr-dr-${n}-backup`);
      expect(labels(sc)[LABELS.protects]).toBe(n);
      expect(envOf(sc)[AGENT_ENV.targetHost]).toBe(`kdr-dr-${n}`);
      expect(envOf(sc)[AGENT_ENV.s3Endpoint]).toBe("https://s3.dr.kryonix.internal:9000");
      expect(sc.dependsOn).toContain(`standby-${n}-service-service`);
    }
  });

  it("reverses replication: what the promoted services write here is copied to the primary's buckets, for the tiers they use", () => {
    const reps = services(r.resources).filter((s) => labels(s)[LABELS.role] === "replicator");
    expect(reps.map((s) => labels(s)[LABELS.tier]).sort()).toEqual(["critical", "important", "secondary"]);
    const tierOf = (t: string) => reps.find((s) => labels(s)[LABELS.tier] === t)!;
    // The standbys (postgresql, timescaledb, redis) are all critical: only that tier's replicator runs.
    expect(tierOf("critical").inputs.mode.replicated.replicas).toBe(1);
    expect(tierOf("important").inputs.mode.replicated.replicas).toBe(0);
    expect(tierOf("secondary").inputs.mode.replicated.replicas).toBe(0);
    const env = envOf(tierOf("critical"));
    expect(env[AGENT_ENV.s3Endpoint]).toBe("https://s3.dr.kryonix.internal:9000");
    expect(env[AGENT_ENV.s3Bucket]).toMatch(/-critical$/);
    expect(env[AGENT_ENV.replicaEndpoint]).not.toBe(env[AGENT_ENV.s3Endpoint]);
    expect(env[AGENT_ENV.replicaBucket]).toMatch(/-critical$/);
    expect(tierOf("critical").inputs.taskSpec.containerSpec.commands.slice(2)).toEqual(["replicate"]);
    expect(tierOf("critical").inputs.taskSpec.containerSpec.secrets.map((x: { fileName: string }) => x.fileName).sort()).toEqual([
      "kdr-catalog-password",
      "kdr-replica-s3-access-key",
      "kdr-replica-s3-secret-key",
      "kdr-s3-access-key",
      "kdr-s3-secret-key",
    ]);
  });

  it("verifies each new backup of the promoted services in this region (the dr drill cron gains verify-new jobs)", () => {
    const jobsOf = (ps: Planned[]) => JSON.parse(envOf(services(ps).find((x) => labels(x)[LABELS.role] === "cron-drill-dr")!)[AGENT_ENV.cronJobs]) as Array<{ name: string }>;
    expect(jobsOf(r.resources).map((j) => j.name).filter((n) => n.startsWith("verify-new-")).sort()).toEqual(["verify-new-postgresql", "verify-new-redis", "verify-new-timescaledb"]);
  });

  it("force: the activation is told so", async () => {
    const f = await plan("dr", { active: true, failover: { standbys: [{ name: "redis", engine: "redis" }], force: true } });
    expect(f.code).toBe(0);
    expect(containers(f.resources).find((c) => c.name === "standby-redis-activate")!.inputs.command).toEqual(["standby", "activate", "--force"]);
  });
});

describe("failover config that is refused, with the key and the fix", () => {
  it.each([
    ["active on the prod stack", "prod", { active: true }, "kryonix-dr:active: promotes the warm standbys of the dr stack; this is the prod stack"],
    ["a volume service as a warm standby", "dr", { failover: { standbys: [{ name: "nextcloud", engine: "volume" }] } }, "kryonix-dr:failover.standbys[0].engine: a warm standby is a PostgreSQL standby or a Redis replica"],
    ["active with no standby", "dr", { active: true, failover: { standbys: [] } }, "kryonix-dr:active: there is no standby to promote"],
    ["active not a boolean", "dr", { active: "yes" }, "kryonix-dr:active: must be true or false"],
    ["a PostgreSQL standby without its password", "dr", { failover: { standbys: [{ name: "keycloak-db", engine: "postgres" }] } }, "kryonix-dr:targetPassword-keycloak-db: the PostgreSQL standby of 'keycloak-db' needs the primary's password"],
  ])("%s", async (_what, stack, config, message) => {
    const r = await plan(stack, config);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(message);
  });

  it("a standby of a service the primary does not have", async () => {
    const r = await plan("dr", { failover: { standbys: [{ name: "redis", engine: "postgres" }] } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/failover.standbys says 'redis' is postgres, the primary stack says redis: correct the engine/);
  });
});
