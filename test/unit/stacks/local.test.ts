/** The local stack: both regions on one machine, the protected services declared too, replicator mode. */
import { beforeAll, describe, expect, it } from "vitest";
import { AGENT_ENV, LABELS } from "../../../contract/index.js";
import { byType, isSecret, labelsOf, one, plainLeaks, runProgram, setupMocks, stackFileConfig, testSecretValue, type Registration } from "../../support/mocks.js";

let regs: Registration[];
let secretKeys: string[];

beforeAll(async () => {
  const file = stackFileConfig("local");
  secretKeys = file.secretKeys ?? [];
  regs = await setupMocks({ ...file, stack: "local" });
  await runProgram();
});

const services = () => byType(regs, "docker:index/service:Service");
const withLabel = (key: string, value: string) => services().filter((s) => labelsOf(s.inputs)[key] === value);
const env = (r: Registration) => (r.inputs.taskSpec as { containerSpec: { env: Record<string, string> } }).containerSpec.env;

describe("local stack", () => {
  it("declares PostgreSQL, Redis and a volume service, labelled stateful with their targets", () => {
    const stateful = withLabel(LABELS.stateful, "true");
    expect(stateful.map((s) => s.inputs.name).sort()).toEqual(["kdr-local-files", "kdr-local-postgresql", "kdr-local-redis"]);
    const pg = stateful.find((s) => s.inputs.name === "kdr-local-postgresql")!;
    expect(labelsOf(pg.inputs)).toMatchObject({ [LABELS.engine]: "postgres", [LABELS.tier]: "critical", [LABELS.rpoSeconds]: "300", [LABELS.rtoSeconds]: "900" });
    const spec = (pg.inputs.taskSpec as { containerSpec: Record<string, any> }).containerSpec;
    expect(spec.image).toBe("kryonix-dr/postgres:15");
    expect(spec.env).toMatchObject({ POSTGRES_USER: "postgres", POSTGRES_PASSWORD_FILE: "/run/secrets/kdr-target-password" });
    expect(stateful.map((s) => (s.inputs.taskSpec as any).containerSpec.image).sort()).toEqual(["kryonix-dr/files:local", "kryonix-dr/postgres:15", "kryonix-dr/redis:7"]);
  });

  it("protects each of them with a sidecar pointing at the declared service and volume", () => {
    for (const name of ["postgresql", "redis", "files"]) {
      const sidecar = withLabel(LABELS.protects, name).find((s) => labelsOf(s.inputs)[LABELS.role] === "sidecar");
      expect(sidecar, name).toBeDefined();
      expect((sidecar!.inputs.taskSpec as any).containerSpec.image).toBe("kryonix-dr/agent:local");
      if (name !== "files") expect(env(sidecar!)[AGENT_ENV.targetHost]).toBe(`kdr-local-${name}`);
    }
    const files = withLabel(LABELS.protects, "files").find((s) => labelsOf(s.inputs)[LABELS.role] === "sidecar")!;
    expect(one(regs, "docker:index/volume:Volume", "service-files-data").inputs.name).toBe("kdr-local-files-data");
    const mounts = (files.inputs.taskSpec as any).containerSpec.mounts as Array<Record<string, unknown>>;
    expect(mounts).toContainEqual({ type: "volume", source: "kdr-local-files-data", target: "/data", readOnly: true });
    expect(mounts).toContainEqual({ type: "volume", source: "kdr-local-files-backup-state", target: "/var/lib/kryonix-dr" });
  });

  it("puts everything on one attachable overlay network, each protected service under its stable name too", () => {
    const net = one(regs, "docker:index/network:Network", "network");
    expect(net.inputs).toMatchObject({ name: "kdr-local-net", driver: "overlay", attachable: true });
    for (const s of services()) {
      const service = labelsOf(s.inputs)[LABELS.stateful] ? labelsOf(s.inputs)[LABELS.service] : undefined;
      // The name clients use (`postgresql`): a failover moves it to the promoted standby.
      expect((s.inputs.taskSpec as any).networksAdvanceds).toContainEqual({ id: "network-id", ...(service ? { aliases: [service] } : {}) });
    }
  });

  it("runs Prometheus on a manager node with the generated config and rules, the Docker socket read-only, its TSDB in memory and its API on port 19090", () => {
    const prom = one(regs, "docker:index/service:Service", "monitoring-prometheus");
    const ts = prom.inputs.taskSpec as any;
    expect(prom.inputs.name).toBe("kdr-local-prometheus");
    expect(ts.containerSpec.image).toBe("kryonix-dr/prometheus:local");
    expect(ts.containerSpec.mounts).toEqual([
      { type: "bind", source: "/var/run/docker.sock", target: "/var/run/docker.sock", readOnly: true },
      { type: "tmpfs", target: "/prometheus" },
    ]);
    expect(ts.placement.constraints).toEqual(["node.role == manager"]);
    expect(ts.containerSpec.configs.map((c: any) => c.fileName)).toEqual(["/etc/prometheus/prometheus.yml", "/etc/prometheus/rules/kryonix-dr.yml"]);
    expect(prom.inputs.endpointSpec).toEqual({ ports: [{ targetPort: 9090, publishedPort: 19090, protocol: "tcp", publishMode: "host" }] });
    const cfg = one(regs, "docker:index/serviceConfig:ServiceConfig", "monitoring-prometheus-config").inputs.dataRaw as string;
    expect(cfg).toMatch(/^global:\n {2}scrape_interval: 5s\n {2}evaluation_interval: 5s\nrule_files:\n {2}- \/etc\/prometheus\/rules\/kryonix-dr\.yml\nscrape_configs:/);
    expect(cfg).toContain('regex: "sidecar|replicator|cron-.*|standby-follower"');
  });

  it("declares storage in both regions and replicates with the agent's replicator", () => {
    const buckets = byType(regs, "minio:index/s3Bucket:S3Bucket");
    const providers = new Set(buckets.map((b) => b.provider));
    expect(providers.size).toBe(2);
    const replicators = withLabel(LABELS.role, "replicator");
    const primaryBuckets = buckets.filter((b) => b.name.startsWith("primary-")).map((b) => b.inputs.bucket as string);
    expect(replicators.map((r) => env(r)[AGENT_ENV.s3Bucket]).sort()).toEqual(primaryBuckets.sort());
    for (const r of replicators) {
      expect(env(r)).toMatchObject({ [AGENT_ENV.s3Endpoint]: "http://127.0.0.1:7480", [AGENT_ENV.replicaEndpoint]: "http://127.0.0.1:7481", [AGENT_ENV.replicationIntervalSeconds]: "10" });
      expect((r.inputs.taskSpec as any).containerSpec.commands).toEqual(["node", "/opt/kryonix-dr/agent.cjs", "replicate"]);
      const files = ((r.inputs.taskSpec as any).containerSpec.secrets as Array<{ fileName: string }>).map((s) => s.fileName).sort();
      // The catalog password: each copy is recorded there with its DR version id.
      expect(files).toEqual(["kdr-catalog-password", "kdr-replica-s3-access-key", "kdr-replica-s3-secret-key", "kdr-s3-access-key", "kdr-s3-secret-key"]);
    }
    // No native replication command on RGW.
    expect(byType(regs, "command:local:Command").filter((c) => String(c.inputs.create).startsWith("mc "))).toEqual([]);
  });

  it("flows the short drill schedules from config to the sidecars", () => {
    const redis = withLabel(LABELS.protects, "redis").find((s) => labelsOf(s.inputs)[LABELS.role] === "sidecar")!;
    expect(env(redis)).toMatchObject({ [AGENT_ENV.scheduleFull]: "0 */5 * * * *", [AGENT_ENV.scheduleIncremental]: "*/30 * * * * *" });
    const pg = withLabel(LABELS.protects, "postgresql").find((s) => labelsOf(s.inputs)[LABELS.role] === "sidecar")!;
    expect(env(pg)[AGENT_ENV.walSwitchSeconds]).toBe("10");
  });

  it("keeps every credential secret", () => {
    expect(plainLeaks(regs, secretKeys.map(testSecretValue))).toEqual([]);
    for (const s of byType(regs, "docker:index/secret:Secret")) expect(isSecret(s.inputs.data)).toBe(true);
    for (const s of services()) expect(isSecret(s.inputs.taskSpec), s.name).toBe(false);
  });
});
