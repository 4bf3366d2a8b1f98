/**
 * The way back after a failover (kryonix-dr:failback on the primary stack), as `kryonix-dr plan
 * --json --policy` shows it with the dr stack deployed and promoted (its outputs read from a
 * deployments directory, as a deployment reads them): the returning standbys before the switch,
 * the hand-over and the stable names after it, the dr stack's next generation, and the config
 * that is refused.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { runAsync } from "../../support/spawn.js";
import { AGENT_ENV, LABELS } from "../../../contract/index.js";

const ROOT = join(__dirname, "..", "..", "..");
type Planned = { type: string; name: string; custom: boolean; inputs: any; dependsOn?: string[] };
vi.setConfig({ testTimeout: 240_000, hookTimeout: 240_000 });

const dir = mkdtempSync(join(tmpdir(), "kdr-dr-plan-failback-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A deployed local-dr stack whose standbys are in the given state (back to standbys after a failback: generation 2, returning from the promoted generation 1). */
function drDeployed(state: "promoted" | "standby" | "standby-after-failback"): string {
  const d = mkdtempSync(join(dir, "deployments-"));
  const one = (n: string) => (state === "standby-after-failback" ? { service: `kdr-local-dr-${n}-g2`, state: "standby" } : { service: `kdr-local-dr-${n}`, state });
  const standbys = { postgresql: one("postgresql"), redis: one("redis") };
  writeFileSync(join(d, "local-dr.json"), JSON.stringify({ stack: "local-dr", project: "kryonix-dr", projectDir: ROOT, status: "deployed", startedAt: new Date().toISOString(), providers: {}, resources: [], outputs: { standbys } }));
  return d;
}

async function plan(stack: string, config: Record<string, unknown>, deployments?: string, what: "--json" | "--outputs" = "--json") {
  const file = join(mkdtempSync(join(dir, "config-")), "config.json");
  writeFileSync(file, JSON.stringify(Object.fromEntries(Object.entries(config).map(([k, v]) => [k, { value: v }]))));
  const r = await runAsync(process.execPath, [join(ROOT, "bin", "kryonix-dr.mjs"), "plan", "--stack", stack, what, ...(what === "--json" ? ["--policy"] : []), "--config-file", file, ...(deployments ? ["--deployments-dir", deployments] : [])], { timeoutMs: 180_000 });
  return { code: r.status, resources: r.status === 0 && what === "--json" ? (JSON.parse(r.stdout) as Planned[]) : [], outputs: r.status === 0 && what === "--outputs" ? (JSON.parse(r.stdout) as Record<string, any>) : {}, stderr: r.stderr };
}
const services = (ps: Planned[]) => ps.filter((p) => p.type === "docker:index/service:Service");
const containers = (ps: Planned[]) => ps.filter((p) => p.type === "docker:index/container:Container");
const byService = (ps: Planned[], name: string) => services(ps).find((p) => p.inputs.name === name);
const labels = (p: Planned): Record<string, string> => Object.fromEntries(((p.inputs.labels ?? []) as Array<{ label: string; value: string }>).map((l) => [l.label, l.value]));
const aliases = (p: Planned) => (p.inputs.taskSpec.networksAdvanceds as Array<{ aliases?: string[] }>).flatMap((n) => n.aliases ?? []);
const envOf = (p: Planned): Record<string, string> => p.inputs.taskSpec.containerSpec.env;
const STANDBYS = [{ name: "postgresql", engine: "postgres" }, { name: "redis", engine: "redis" }];

describe("local stack with kryonix-dr:failback, before the switch: its services return as standbys of the promoted ones", () => {
  let r!: Awaited<ReturnType<typeof plan>>;
  beforeAll(async () => {
    r = await plan("local", { failback: { drStack: "local-dr", standbys: STANDBYS } }, drDeployed("promoted"));
  });
  it("plans, and the policies pass", () => {
    expect(r.stderr).toContain("policies: 0 violation(s)");
    expect(r.code).toBe(0);
  });
  it("declares each as a new service (generation 2) with a new volume, following the dr stack's promoted service, without the stable name", () => {
    for (const n of ["postgresql", "redis"]) {
      const s = byService(r.resources, `kdr-local-${n}-g2`)!;
      expect(labels(s)[LABELS.role], n).toBe("standby");
      expect(aliases(s), n).toEqual([]);
      expect(s.inputs.taskSpec.containerSpec.mounts[0].source, n).toBe(`kdr-local-${n}-g2-data`);
      // It follows what answers to the stable name: the promoted service, the only one holding it until the switch.
      expect(envOf(byService(r.resources, `kdr-local-${n}-g2-follower`)!)[AGENT_ENV.primaryHost], n).toBe(n);
      // The old service (the data of before the failover) is not declared: it would answer to the stable name.
      expect(byService(r.resources, `kdr-local-${n}`), n).toBeUndefined();
    }
    expect(byService(r.resources, "kdr-local-redis-g2")!.inputs.taskSpec.containerSpec.args).toEqual(["--replicaof", "redis", "6379"]);
    const seed = containers(r.resources).find((c) => c.name === "failback-postgresql-g2-seed")!;
    expect(seed.inputs.command).toEqual(["standby", "seed", "--target", "/var/lib/postgresql/data"]);
    // Seeded from the primary region's copies (the reverse replicators brought them), read-only.
    expect(seed.inputs.envs).toContain(`${AGENT_ENV.s3Endpoint}=http://127.0.0.1:7480`);
    expect(seed.inputs.envs).toContain(`${AGENT_ENV.primaryHost}=postgresql`);
  });
  it("runs no sidecar for them until the switch (the dr stack's back up the active side), and no hand-over yet", () => {
    expect(byService(r.resources, "kdr-local-postgresql-backup")).toBeUndefined();
    expect(byService(r.resources, "kdr-local-redis-backup")).toBeUndefined();
    expect(byService(r.resources, "kdr-local-files-backup")).toBeDefined();
    expect(containers(r.resources).map((c) => c.name).sort()).toEqual(["failback-postgresql-g2-seed"]);
  });
});

describe("local stack with failback.switch true: the hand-over, then the stable names and the sidecars", () => {
  let r!: Awaited<ReturnType<typeof plan>>;
  beforeAll(async () => {
    r = await plan("local", { failback: { drStack: "local-dr", standbys: STANDBYS, switch: true, catchUpSeconds: 30 } }, drDeployed("promoted"));
  });
  it("plans, and the policies pass", () => {
    expect(r.stderr).toContain("policies: 0 violation(s)");
    expect(r.code).toBe(0);
  });
  it("runs kdr-agent standby switchover per service, which the service change waits for", () => {
    const sw = containers(r.resources).filter((c) => c.name.endsWith("-switchover"));
    expect(sw.map((c) => c.name).sort()).toEqual(["failback-postgresql-g2-switchover", "failback-redis-g2-switchover"]);
    const pgSwitch = sw.find((c) => c.name === "failback-postgresql-g2-switchover")!;
    expect(pgSwitch.inputs.command).toEqual(["standby", "switchover", "--target", "/var/lib/postgresql/data"]);
    expect(pgSwitch.inputs.envs).toEqual(expect.arrayContaining([`${AGENT_ENV.catchUpSeconds}=30`, `${AGENT_ENV.primaryHost}=postgresql`, `${AGENT_ENV.targetHost}=kdr-local-postgresql-g2`]));
    for (const n of ["postgresql", "redis"]) {
      const s = services(r.resources).find((p) => p.inputs.name === `kdr-local-${n}-g2`)!;
      expect(s.dependsOn, n).toContain(`failback-${n}-g2-switchover`);
      expect(aliases(s), n).toEqual([n]);
      expect(labels(s)[LABELS.role], n).toBe("promoted");
      expect(byService(r.resources, `kdr-local-${n}-g2-follower`), n).toBeUndefined();
    }
    expect(byService(r.resources, "kdr-local-redis-g2")!.inputs.taskSpec.containerSpec.args).toEqual([]);
  });
  it("backs the returned services up again, connecting to them", () => {
    expect(envOf(byService(r.resources, "kdr-local-postgresql-backup")!)[AGENT_ENV.targetHost]).toBe("kdr-local-postgresql-g2");
    expect(envOf(byService(r.resources, "kdr-local-redis-backup")!)[AGENT_ENV.targetHost]).toBe("kdr-local-redis-g2");
  });
});

describe("what the dr stack follows, and the returned services' stability", () => {
  const hosts = (o: Record<string, any>) => Object.fromEntries((o.standbySources as Array<{ name: string; host: string }>).map((x) => [x.name, x.host]));
  it("before the switch the dr stack still reads the old names (its inputs stay as deployed); after it, the returned services", async () => {
    const before = await plan("local", { failback: { drStack: "local-dr", standbys: STANDBYS } }, drDeployed("promoted"), "--outputs");
    expect(before.code, before.stderr).toBe(0);
    expect(hosts(before.outputs)).toEqual({ postgresql: "kdr-local-postgresql", redis: "kdr-local-redis" });
    expect(before.outputs.failback).toEqual({ postgresql: { service: "kdr-local-postgresql-g2", state: "standby" }, redis: { service: "kdr-local-redis-g2", state: "standby" } });
    const after = await plan("local", { failback: { drStack: "local-dr", standbys: STANDBYS, switch: true } }, drDeployed("promoted"), "--outputs");
    expect(hosts(after.outputs)).toEqual({ postgresql: "kdr-local-postgresql-g2", redis: "kdr-local-redis-g2" });
  });
  it("once the dr stack is back to standbys, the returned services plan exactly as they were deployed (no seed or hand-over again)", async () => {
    const cfg = { failback: { drStack: "local-dr", standbys: STANDBYS, switch: true } };
    const atSwitch = await plan("local", cfg, drDeployed("promoted"));
    const later = await plan("local", cfg, drDeployed("standby-after-failback"));
    expect(later.code, later.stderr).toBe(0);
    const returning = (ps: Planned[]) => ps.filter((p) => p.name.startsWith("failback-postgresql") || p.name.startsWith("failback-redis")).map((p) => ({ name: p.name, inputs: p.inputs }));
    expect(returning(later.resources)).toEqual(returning(atSwitch.resources));
    expect(returning(later.resources).length).toBeGreaterThan(5);
  });
});

describe("dr stack, failover.generation 2: new standbys of the returned services", () => {
  it("names them -g2 (new volumes), following the primary's services", async () => {
    const r = await plan("dr", { failover: { standbys: [{ name: "postgresql", engine: "postgres" }, { name: "redis", engine: "redis" }], generation: 2 } });
    expect(r.stderr).toContain("policies: 0 violation(s)");
    expect(r.code).toBe(0);
    expect(byService(r.resources, "kdr-dr-postgresql-g2")).toBeDefined();
    expect(byService(r.resources, "kdr-dr-postgresql")).toBeUndefined();
    // New resources, not the generation-1 ones renamed: those (and their volumes) stay until the deployment deletes what it no longer declares, keeping the volumes.
    expect(containers(r.resources).find((c) => c.name === "standby-postgresql-g2-seed")!.inputs.mounts[0].source).toBe("kdr-dr-postgresql-g2-data");
    expect(r.resources.filter((p) => p.type === "docker:index/volume:Volume").map((p) => p.name)).toEqual(expect.arrayContaining(["standby-postgresql-g2-data", "standby-redis-g2-service-data"]));
  });
});

describe("failback config that is refused, with the key and the fix", () => {
  it.each([
    ["failback on the dr stack", "dr", { failback: { drStack: "x", standbys: STANDBYS } }, "kryonix-dr:failback: brings the primary stack's services back after a failover; this is the dr stack"],
    ["no dr stack named", "local", { failback: { standbys: STANDBYS } }, "kryonix-dr:failback.drStack: names the dr stack"],
    ["a service the stack does not have", "local", { failback: { drStack: "local-dr", standbys: [{ name: "keycloak", engine: "postgres" }] } }, "kryonix-dr:failback.standbys[0].name: 'keycloak' is not a service of this stack (it has: postgresql, redis, files)"],
    ["a volume service", "local", { failback: { drStack: "local-dr", standbys: [{ name: "files", engine: "volume" }] } }, "'files' is volume: only PostgreSQL and Redis services fail over to a warm standby"],
    ["the wrong engine", "local", { failback: { drStack: "local-dr", standbys: [{ name: "redis", engine: "postgres" }] } }, "kryonix-dr:failback.standbys[0].engine: says \"postgres\", the service 'redis' is redis"],
    ["generation 1", "local", { failback: { drStack: "local-dr", standbys: STANDBYS, generation: 1 } }, "kryonix-dr:failback.generation: must be a whole number from 2 on"],
    ["switch not a boolean", "local", { failback: { drStack: "local-dr", standbys: STANDBYS, switch: "yes" } }, "kryonix-dr:failback.switch: must be true or false"],
    ["a dr generation of 0", "dr", { failover: { standbys: [], generation: 0 } }, "kryonix-dr:failover.generation: must be a whole number from 1 on"],
  ])("%s", async (_what, stack, config, message) => {
    const r = await plan(stack, config);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(message);
  });

  it("a dr stack whose standbys are not promoted: nothing to fail back from", async () => {
    const r = await plan("local", { failback: { drStack: "local-dr", standbys: STANDBYS } }, drDeployed("standby"));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("the dr stack local-dr runs 'postgresql' as a standby, not promoted: there is nothing to fail back from");
  });
});
