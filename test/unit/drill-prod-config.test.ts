/**
 * `kryonix-dr drill --stack prod`'s local stack: the prod stack's nine services as Pulumi.prod.yaml
 * declares them, changed only where the local platform cannot honour them (image, names, the
 * drill's full cadence, retention in 10-second "days"), planned as the drill deploys it.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import yaml from "js-yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LABELS } from "../../contract/index.js";
import { planInChildProcess, type PlannedResource } from "../../local/plan.js";
import type { Platform } from "../../local/platform.js";
import { drillLocalConfig, drillServices, DRILL_FULL_SCHEDULE, REGION_DRILL_RETENTION_DAYS, SEEDED_DRILL_FULL_SCHEDULE } from "../../local/drill/stacks.js";
import { loadStackConfig } from "../../local/program.js";
import type { RawService } from "../../stacks/config/schema.js";

const ROOT = join(__dirname, "..", "..");
const tmp = mkdtempSync(join(tmpdir(), "kdrtest-drill-prod-"));
const region = (name: string, port: number) => ({ name, endpoint: `http://172.18.0.1:${port}`, loopbackEndpoint: `http://127.0.0.1:${port}`, accessKey: "ak", secretKey: "platform-region-secret", lcDebugIntervalSeconds: 10 });
const platform: Platform = {
  gatewayIp: "172.18.0.1",
  regions: { primary: region("local-primary", 7480), dr: region("local-dr", 7481) },
  catalog: { host: "127.0.0.1", port: 5433, user: "postgres", password: "platform-catalog-secret" },
  images: { base: "b", agent: "kryonix-dr/agent:local", postgres: "kryonix-dr/postgres:15", redis: "kryonix-dr/redis:7", files: "kryonix-dr/files:local", prometheus: "kryonix-dr/prometheus:local", standins: "kryonix-dr/standins:local" },
  tools: { promtool: "/bin/true" },
};
const prod = (yaml.load(readFileSync(join(ROOT, "Pulumi.prod.yaml"), "utf8")) as { config: Record<string, unknown> }).config["kryonix-dr:services"] as RawService[];

let resources: PlannedResource[];
let config: ReturnType<typeof drillLocalConfig>;
beforeAll(async () => {
  config = drillLocalConfig(platform, ROOT, tmp, { source: "prod" });
  const file = join(tmp, "config.json");
  writeFileSync(file, JSON.stringify(config), { mode: 0o600 });
  resources = await planInChildProcess("local", ROOT, file);
}, 180_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const services = () => resources.filter((r) => r.type === "docker:index/service:Service");
const labels = (r: PlannedResource) => Object.fromEntries(((r.inputs.labels ?? []) as Array<{ label: string; value: string }>).map((l) => [l.label, l.value]));
const byRole = (role: string) => services().filter((s) => labels(s)[LABELS.role] === role);

describe("drill --stack prod: the local stack it deploys", () => {
  it("keeps every prod service with its engine, tier, incremental schedule, hooks, placement and user; only the full cadence, image and short retention differ", () => {
    const raw = config.services!.value as RawService[];
    expect(raw.map((s) => s.name)).toEqual(prod.map((s) => s.name));
    expect(raw).toHaveLength(9);
    for (const [i, s] of raw.entries()) {
      const p = prod[i]!;
      expect({ engine: s.engine, tier: s.tier, incremental: s.schedules?.incremental, hooks: s.hooks, placement: s.placement, user: s.user, dataPath: s.dataPath }).toEqual({
        engine: p.engine,
        tier: p.tier,
        incremental: p.schedules?.incremental,
        hooks: p.hooks,
        placement: p.placement,
        user: p.user,
        dataPath: p.dataPath,
      });
      expect(s.schedules?.full).toBe(DRILL_FULL_SCHEDULE);
      expect(s.host).toBeUndefined();
      expect(s.volume).toBeUndefined();
    }
    const image = Object.fromEntries(raw.map((s) => [s.name, [s.image, ...(s.args ?? [])].join(" ")]));
    expect(image).toEqual({
      postgresql: "kryonix-dr/postgres:15",
      timescaledb: "kryonix-dr/postgres:15",
      redis: "kryonix-dr/redis:7",
      minio: "kryonix-dr/standins:local minio /data",
      keycloak: "kryonix-dr/standins:local keycloak /opt/keycloak/data",
      nextcloud: "kryonix-dr/standins:local nextcloud /var/www/html",
      traefik: "kryonix-dr/standins:local traefik /certs",
      grafana: "kryonix-dr/standins:local grafana /var/lib/grafana",
      prometheus: "kryonix-dr/prometheus:local",
    });
  });

  it("parses to the specs the drill verifies against: prod's RPO targets, a password for each database and Redis", () => {
    const specs = drillServices(ROOT, "prod", platform.images);
    expect(specs.map((s) => [s.name, s.engine, s.tier, s.passwordKey ?? null])).toEqual(prod.map((p) => [p.name, p.engine, p.tier, p.engine === "volume" ? null : `targetPassword-${p.name}`]));
    for (const k of ["targetPassword-postgresql", "targetPassword-timescaledb", "targetPassword-redis"]) expect(config[k]?.secret).toBe(true);
  });

  it("declares the nine services and a sidecar for each, placed where prod places them", () => {
    const stateful = services().filter((s) => labels(s)[LABELS.stateful] === "true");
    expect(stateful.map((s) => labels(s)[LABELS.service]).sort()).toEqual(prod.map((s) => s.name).sort());
    const sidecars = byRole("sidecar");
    for (const p of prod) {
      const sc = sidecars.find((s) => labels(s)[LABELS.protects] === p.name);
      expect(sc, `sidecar of ${p.name}`).toBeDefined();
      const constraints = (sc!.inputs.taskSpec as { placement?: { constraints?: string[] } }).placement?.constraints ?? [];
      for (const c of p.placement ?? []) expect(constraints).toContain(c);
    }
  });

  it("runs no Prometheus of the program's own beside the protected one (prod has none), and keeps prod's sidecar limits", () => {
    expect(services().filter((s) => String(s.inputs.name ?? "").endsWith("-prometheus")).map((s) => labels(s)[LABELS.service])).toEqual(["prometheus"]);
    expect(byRole("monitoring")).toEqual([]);
    const limits = (byRole("sidecar")[0]!.inputs.taskSpec as { resources: { limits: { memoryBytes: number } } }).resources.limits;
    expect(limits.memoryBytes).toBe(512 * 1024 * 1024);
  });
});

describe("the local stack's retention as each drill deploys it", () => {
  const incrementalDays = (c: ReturnType<typeof drillLocalConfig>) => Object.fromEntries((c.services!.value as RawService[]).map((s) => [s.name, s.retention?.incrementalDays ?? "default"]));

  it("a services drill keeps the stack file's (Redis's whole RDBs at the default 7 days, 70 s here)", () => {
    expect(incrementalDays(drillLocalConfig(platform, ROOT, tmp))).toEqual({ postgresql: "default", redis: "default", files: "default" });
  });

  it("a region drill keeps every incremental 30 days (300 s here), longer than its loss, copy and catalog rebuild take", () => {
    expect(incrementalDays(drillLocalConfig(platform, ROOT, tmp, { region: true }))).toEqual({ postgresql: REGION_DRILL_RETENTION_DAYS, redis: REGION_DRILL_RETENTION_DAYS, files: REGION_DRILL_RETENTION_DAYS });
    expect(REGION_DRILL_RETENTION_DAYS).toBe(30);
  });
});

describe("the full-backup cadence each drill deploys", () => {
  const fulls = (c: ReturnType<typeof drillLocalConfig>) => Object.fromEntries((c.services!.value as RawService[]).map((s) => [s.name, s.schedules?.full]));
  const declared = (stack: string) => Object.fromEntries((JSON.parse(loadStackConfig(ROOT, stack).config["kryonix-dr:services"]!) as RawService[]).map((s) => [s.name, s.schedules?.full]));

  it("a drill without seed data backs up in full every minute", () => {
    expect(new Set(Object.values(fulls(drillLocalConfig(platform, ROOT, tmp))))).toEqual(new Set([DRILL_FULL_SCHEDULE]));
    expect(new Set(Object.values(fulls(drillLocalConfig(platform, ROOT, tmp, { source: "prod" }))))).toEqual(new Set([DRILL_FULL_SCHEDULE]));
  });

  it("a seeded drill (--data-size) backs up in full at the seed's daily cadence, and the prod stack's at its own", () => {
    expect(new Set(Object.values(fulls(drillLocalConfig(platform, ROOT, tmp, { seeded: true }))))).toEqual(new Set([SEEDED_DRILL_FULL_SCHEDULE]));
    const prod = fulls(drillLocalConfig(platform, ROOT, tmp, { source: "prod", seeded: true }));
    expect(prod).toEqual(declared("prod"));
    expect(Object.values(prod)).not.toContain(DRILL_FULL_SCHEDULE);
  });
});
