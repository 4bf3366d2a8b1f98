/**
 * The policies the AWSGuard way: a compliant plan, then one mutation per violation, a missing
 * property, and a config override (advisory / disabled / a parameter) for each policy.
 * Fixtures are shaped like the components' real inputs (see fixtures.ts).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AGENT_ENV, LABELS } from "../../../contract/index.js";
import { evaluatePolicies, hasMandatory, policies, readPolicyConfig, type EvaluateConfig, type PlannedResource, type Violation } from "../../../policies/evaluate.js";
import { appService, compliantPlan, containerSpec, copy, envOf, find, GRAFANA_NODE, minioProvider, SECRET, setLabel, sidecar, storage, T, without } from "./fixtures.js";

/**
 * The prod stack's shape: the same bucket names in a primary and a DR region, behind two minio
 * providers; the sidecars write to the primary.
 */
function twoRegionPlan(): PlannedResource[] {
  const primary = minioProvider("primary-s3", "172.18.0.1:7480");
  const dr = minioProvider("dr-s3", "172.18.0.1:7481");
  const svcs = [
    { name: "postgres", tier: "critical" as const, engine: "postgres" as const },
    { name: "redis", tier: "important" as const, engine: "redis" as const },
    { name: "grafana", tier: "secondary" as const, engine: "volume" as const },
  ];
  return [
    ...compliantPlan().filter((r) => !r.urn?.includes("BackupStorage") && !r.urn?.includes("::storage")),
    primary,
    dr,
    ...storage("kryonix-backups", svcs, { comp: "primary", provider: primary.urn, endpoint: "http://172.18.0.1:7480" }),
    ...storage("kryonix-backups", svcs, { comp: "dr", provider: dr.urn, endpoint: "http://172.18.0.1:7481" }),
  ];
}

function run(plan: PlannedResource[], config?: EvaluateConfig): Violation[] {
  return evaluatePolicies(plan, config);
}
function of(policy: string, plan: PlannedResource[], config?: EvaluateConfig): Violation[] {
  return run(plan, config).filter((v) => v.policy === policy);
}

describe("the compliant plan", () => {
  it("passes every policy", () => {
    expect(run(compliantPlan())).toEqual([]);
  });

  it("has eleven policies, each mandatory by default with a config schema", () => {
    expect(policies.map((p) => p.name)).toEqual([
      "stateful-service-has-backup-sidecar",
      "backup-bucket-private-versioned-locked",
      "lock-retention-covers-lifecycle",
      "retention-covers-two-full-backups",
      "schedule-meets-rpo",
      "critical-bucket-replicated",
      "no-plaintext-credentials",
      "sidecar-cannot-delete-backups",
      "no-public-bucket-policy",
      "protected-service-declares-rpo-rto",
      "volume-sidecar-on-the-data-node",
    ]);
    for (const p of policies) {
      expect(p.enforcementLevel).toBe("mandatory");
      expect(p.configSchema?.properties).toBeTypeOf("object");
      expect(p.configSchema?.properties).not.toHaveProperty("enforcementLevel");
    }
  });
});

describe("evaluatePolicies config", () => {
  const broken = () => without(compliantPlan(), (r) => r.name.startsWith("grafana-sidecar"));
  const P = "stateful-service-has-backup-sidecar";

  it("rejects an unknown policy name or level, naming the fix", () => {
    expect(() => run(compliantPlan(), { enforcement: { "no-such-policy": "advisory" } })).toThrow(/unknown policy "no-such-policy".*Fix: use one of stateful-service-has-backup-sidecar/);
    expect(() => run(compliantPlan(), { enforcement: { "no-public-bucket-policy": "loud" as never } })).toThrow(/"loud".*Fix: use one of mandatory, advisory, disabled/);
    expect(() => run(compliantPlan(), { "no-such-policy": {} })).toThrow(/"no-such-policy" is not a policy of this pack/);
  });

  it("rejects an unknown parameter or a parameter of the wrong type, naming the fix", () => {
    expect(() => run(compliantPlan(), { [P]: { exclud: ["x"] } })).toThrow(`Policy config: "${P}" has no parameter "exclud". Fix: use one of engines, statefulMountTypes, exclude.`);
    expect(() => run(compliantPlan(), { [P]: { exclude: "grafana" } })).toThrow(`Policy config: "${P}".exclude is "grafana". Fix: give an array of strings.`);
    expect(() => run(compliantPlan(), { "schedule-meets-rpo": { walMarginSeconds: "30" } })).toThrow(/walMarginSeconds is "30". Fix: give a number/);
    expect(() => run(compliantPlan(), { "no-public-bucket-policy": { x: 1 } })).toThrow(/this policy takes no parameters, only a level/);
  });

  it("takes the --policy-pack-config shapes too: a bare level, enforcementLevel beside parameters, and all", () => {
    expect(of(P, broken(), { [P]: "advisory" })[0]!.enforcement).toBe("advisory");
    expect(of(P, broken(), { [P]: { enforcementLevel: "disabled" } })).toEqual([]);
    expect(of(P, broken(), { [P]: { enforcementLevel: "advisory", exclude: [] } })[0]!.enforcement).toBe("advisory");
    expect(run(broken(), { all: "advisory" }).every((v) => v.enforcement === "advisory")).toBe(true);
    // The enforcement map wins over the per-policy level, which wins over "all".
    expect(of(P, broken(), { all: "disabled", [P]: "advisory", enforcement: { [P]: "mandatory" } })[0]!.enforcement).toBe("mandatory");
    expect(() => run(broken(), { all: "off" })).toThrow(/"all" is "off"/);
  });

  it("reads a policy config file, naming the file on a bad one", () => {
    const dir = mkdtempSync(join(tmpdir(), "kdrtest-policies-config-"));
    try {
      writeFileSync(join(dir, "ok.json"), JSON.stringify({ [P]: { enforcementLevel: "advisory", exclude: ["grafana"] } }));
      expect(of(P, broken(), readPolicyConfig(join(dir, "ok.json")))).toEqual([]);
      writeFileSync(join(dir, "bad.json"), "[1, 2]");
      expect(() => readPolicyConfig(join(dir, "bad.json"))).toThrow(/bad.json is not a JSON object .*Fix: write/);
      expect(() => readPolicyConfig(join(dir, "missing.json"))).toThrow(/missing.json cannot be read/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---- 1 ----------------------------------------------------------------------------------------

describe("stateful-service-has-backup-sidecar", () => {
  const P = "stateful-service-has-backup-sidecar";
  const noGrafanaSidecar = () => without(compliantPlan(), (r) => r.urn?.includes("grafana-sidecar") === true || r.name.startsWith("grafana-sidecar"));

  it("passes sidecars, crons, replicators and stateless services", () => {
    expect(of(P, compliantPlan())).toEqual([]);
  });

  it("flags a service that mounts a volume and has no sidecar", () => {
    const v = of(P, noGrafanaSidecar());
    expect(v).toHaveLength(1);
    expect(v[0]).toMatchObject({ enforcement: "mandatory", resourceType: T.service, resourceName: "grafana-service" });
    expect(v[0]!.message).toContain('Swarm service "grafana"');
    expect(v[0]!.message).toContain('mounts volume "grafana-data"');
    expect(v[0]!.message).toContain(`Fix: add a backup sidecar for it (a Swarm service labelled ${LABELS.protects}=grafana)`);
  });

  it("flags an engine image without a volume (redis:7-alpine)", () => {
    const plan = [...compliantPlan(), appService("cache", { image: "docker.io/library/redis:7-alpine" })];
    const v = of(P, plan);
    expect(v.map((x) => x.resourceName)).toEqual(["cache-service"]);
    expect(v[0]!.message).toContain('its image "docker.io/library/redis:7-alpine" is a redis engine');
  });

  it("flags a service whose labels name an engine or state", () => {
    const plan = [
      ...compliantPlan(),
      appService("ledger", { image: "acme/ledger:1", labels: { [LABELS.engine]: "postgres" } }),
      appService("queue", { image: "acme/queue:1", labels: { [LABELS.stateful]: "true" } }),
    ];
    expect(of(P, plan).map((x) => x.resourceName).sort()).toEqual(["ledger-service", "queue-service"]);
  });

  it("matches a sidecar by the protected service's kryonix.dr.service label as well as its name", () => {
    const plan = compliantPlan();
    const pg = find(plan, T.service, "postgres-service");
    pg.inputs.name = "kryonix_postgres"; // Swarm name differs, the logical label still matches the sidecar
    expect(of(P, plan)).toEqual([]);
    setLabel(pg, LABELS.service, undefined); // now neither matches
    expect(of(P, plan).map((x) => x.resourceName)).toEqual(["postgres-service"]);
  });

  it("treats a missing mounts/labels/image as stateless rather than failing", () => {
    const plan = copy(compliantPlan());
    const t = find(plan, T.service, "traefik-service");
    delete t.inputs.labels;
    delete containerSpec(plan, "traefik-service").mounts;
    delete containerSpec(plan, "traefik-service").image;
    expect(of(P, plan)).toEqual([]);
  });

  it("config: advisory, disabled, exclude and engine list", () => {
    expect(of(P, noGrafanaSidecar(), { enforcement: { [P]: "advisory" } })[0]!.enforcement).toBe("advisory");
    expect(hasMandatory(run(noGrafanaSidecar(), { enforcement: { [P]: "advisory" } }))).toBe(false);
    expect(of(P, noGrafanaSidecar(), { enforcement: { [P]: "disabled" } })).toEqual([]);
    expect(of(P, noGrafanaSidecar(), { [P]: { exclude: ["grafana"] } })).toEqual([]);
    const plan = [...compliantPlan(), appService("search", { image: "acme/searchd:2" })];
    expect(of(P, plan)).toEqual([]);
    expect(of(P, plan, { [P]: { engines: ["searchd"] } }).map((x) => x.resourceName)).toEqual(["search-service"]);
  });
});

// ---- 2 ----------------------------------------------------------------------------------------

describe("backup-bucket-private-versioned-locked", () => {
  const P = "backup-bucket-private-versioned-locked";
  const critical = (plan: PlannedResource[]) => find(plan, T.bucket, "storage-critical");

  it("passes the compliant buckets", () => {
    expect(of(P, compliantPlan())).toEqual([]);
  });

  it("flags a public acl", () => {
    const plan = copy(compliantPlan());
    critical(plan).inputs.acl = "public-read";
    const v = of(P, plan);
    expect(v).toHaveLength(1);
    expect(v[0]!.message).toMatch(/^Bucket "kryonix-backups-critical" \(minio:index\/s3Bucket:S3Bucket "storage-critical"\) has acl "public-read".*Fix: set acl: "private"/);
  });

  it("flags an anonymous bucket policy on the bucket", () => {
    const plan = copy(compliantPlan());
    plan.push({
      type: T.bucketPolicy,
      name: "open",
      inputs: { bucket: "kryonix-backups-critical", policy: JSON.stringify({ Statement: [{ Effect: "Allow", Principal: { AWS: ["*"] }, Action: ["s3:GetObject"], Resource: ["arn:aws:s3:::kryonix-backups-critical/*"] }] }) },
    });
    expect(of(P, plan).map((x) => x.message).join("\n")).toContain('minio:index/s3BucketPolicy:S3BucketPolicy "open" allows anonymous access');
  });

  it("flags versioning that is suspended, and versioning that is missing", () => {
    const plan = copy(compliantPlan());
    (find(plan, T.versioning, "storage-critical-versioning").inputs.versioningConfiguration as Record<string, unknown>).status = "Suspended";
    expect(of(P, plan)[0]!.message).toContain('is not versioned (it has versioning status "Suspended"). Fix: declare a minio.S3BucketVersioning');
    const gone = without(compliantPlan(), (r) => r.name === "storage-critical-versioning");
    expect(of(P, gone)[0]!.message).toContain("is not versioned (it has no S3BucketVersioning)");
  });

  it("flags a bucket without object lock (false or missing)", () => {
    const plan = copy(compliantPlan());
    critical(plan).inputs.objectLocking = false;
    expect(of(P, plan)[0]!.message).toContain("is not object-locked (objectLocking is false). Fix: set objectLocking: true");
    delete critical(plan).inputs.objectLocking;
    expect(of(P, plan)[0]!.message).toContain("objectLocking is unset");
  });

  it("flags a bucket without lifecycle rules, or with only disabled ones", () => {
    const gone = without(compliantPlan(), (r) => r.name === "storage-critical-lifecycle");
    expect(of(P, gone)[0]!.message).toContain("has no lifecycle rule that expires anything. Fix: declare a minio.IlmPolicy");
    const plan = copy(compliantPlan());
    for (const rule of find(plan, T.ilm, "storage-critical-lifecycle").inputs.rules as Array<Record<string, unknown>>) rule.status = "Disabled";
    expect(of(P, plan)).toHaveLength(1);
  });

  it("judges each region's bucket on its own resources when primary and DR share bucket names", () => {
    expect(run(twoRegionPlan())).toEqual([]);
    const plan = without(twoRegionPlan(), (r) => r.name === "dr-critical-versioning");
    const v = of(P, plan);
    expect(v).toHaveLength(1);
    expect(v[0]).toMatchObject({ resourceName: "dr-critical" });
    expect(v[0]!.message).toContain("is not versioned (it has no S3BucketVersioning)");
  });

  it("links versioning/ILM to a bucket whose name is not known yet through the parent component", () => {
    const plan = copy(compliantPlan()).filter((r) => !r.name.startsWith("storage-important") && !r.name.startsWith("storage-secondary"));
    for (const r of plan) if (r.parent?.includes("BackupStorage") && typeof r.inputs.bucket === "string") r.inputs.bucket = "[unknown]";
    expect(of(P, plan)).toEqual([]);
  });

  it("config: advisory, disabled and exclude", () => {
    const plan = copy(compliantPlan());
    critical(plan).inputs.objectLocking = false;
    expect(of(P, plan, { enforcement: { [P]: "advisory" } })[0]!.enforcement).toBe("advisory");
    expect(of(P, plan, { enforcement: { [P]: "disabled" } })).toEqual([]);
    expect(of(P, plan, { [P]: { exclude: ["kryonix-backups-critical"] } })).toEqual([]);
  });
});

// ---- 3 ----------------------------------------------------------------------------------------

describe("lock-retention-covers-lifecycle", () => {
  const P = "lock-retention-covers-lifecycle";
  const retention = (plan: PlannedResource[]) => find(plan, T.command, "storage-critical-default-retention");

  it("passes when the default retention equals the longest expiry", () => {
    expect(of(P, compliantPlan())).toEqual([]);
  });

  it("flags a retention shorter than the longest lifecycle expiry", () => {
    const plan = copy(compliantPlan());
    retention(plan).inputs.create = "node bin/kryonix-dr.mjs s3 put-default-retention --bucket kryonix-backups-critical --mode GOVERNANCE --days 20";
    const v = of(P, plan);
    expect(v).toHaveLength(1);
    expect(v[0]).toMatchObject({ resourceType: T.command, resourceName: "storage-critical-default-retention" });
    expect(v[0]!.message).toContain("default lock retention of 20 days");
    expect(v[0]!.message).toContain('lifecycle rule "full-postgres" keeps objects 30 days');
    expect(v[0]!.message).toContain("Fix: raise the retention to at least 30 days");
  });

  it("flags an expiry that outgrows the retention", () => {
    const plan = copy(compliantPlan());
    const rules = find(plan, T.ilm, "storage-critical-lifecycle").inputs.rules as Array<Record<string, unknown>>;
    rules.find((r) => r.id === "full-postgres")!.expiration = "45d";
    expect(of(P, plan)[0]!.message).toContain("keeps objects 45 days, so for 15 days they are unlocked");
  });

  it("reads `mc retention set --default` and put-object-lock-configuration commands too", () => {
    const plan = copy(compliantPlan());
    retention(plan).inputs.create = "mc retention set --default COMPLIANCE 10d primary/kryonix-backups-critical";
    expect(of(P, plan)[0]!.message).toContain("default lock retention of 10 days");
    retention(plan).inputs.create =
      `aws s3api put-object-lock-configuration --bucket kryonix-backups-critical --object-lock-configuration '{"ObjectLockEnabled":"Enabled","Rule":{"DefaultRetention":{"Mode":"GOVERNANCE","Days":12}}}'`;
    expect(of(P, plan)[0]!.message).toContain("default lock retention of 12 days");
  });

  it("does not let the primary's retention cover the DR bucket of the same name", () => {
    const plan = without(twoRegionPlan(), (r) => r.name === "dr-important-default-retention");
    expect(of(P, plan).map((v) => v.resourceName)).toEqual(["dr-important"]);
  });

  it("flags a bucket with expiry but no default retention at all (missing property)", () => {
    const plan = without(compliantPlan(), (r) => r.name === "storage-critical-default-retention");
    const v = of(P, plan);
    expect(v).toHaveLength(1);
    expect(v[0]!.message).toContain("has no default lock retention");
    expect(v[0]!.message).toContain("kryonix-dr s3 put-default-retention --bucket kryonix-backups-critical --mode GOVERNANCE --days 30");
  });

  it("config: advisory and disabled", () => {
    const plan = without(compliantPlan(), (r) => r.name === "storage-critical-default-retention");
    expect(of(P, plan, { enforcement: { [P]: "advisory" } })[0]!.enforcement).toBe("advisory");
    expect(of(P, plan, { enforcement: { [P]: "disabled" } })).toEqual([]);
  });
});

// ---- 4 ----------------------------------------------------------------------------------------

describe("retention-covers-two-full-backups", () => {
  const P = "retention-covers-two-full-backups";
  const pgEnv = (plan: PlannedResource[]) => envOf(plan, "postgres-sidecar-service");

  it("passes daily fulls kept 30 days", () => {
    expect(of(P, compliantPlan())).toEqual([]);
  });

  it("flags weekly fulls kept 10 days, computing the interval from the cron", () => {
    const plan = copy(compliantPlan());
    pgEnv(plan)[AGENT_ENV.scheduleFull] = "0 2 * * 0";
    pgEnv(plan)[AGENT_ENV.retentionFullDays] = "10";
    const v = of(P, plan);
    expect(v).toHaveLength(1);
    expect(v[0]!.resourceName).toBe("postgres-sidecar-service");
    expect(v[0]!.message).toContain('"0 2 * * 0" runs every 7 d at worst');
    expect(v[0]!.message).toContain(`Fix: set ${AGENT_ENV.retentionFullDays} to at least 14`);
  });

  it("uses the longest gap of an irregular schedule (weekdays only: 3 days over the weekend)", () => {
    const plan = copy(compliantPlan());
    pgEnv(plan)[AGENT_ENV.scheduleFull] = "0 2 * * 1-5";
    pgEnv(plan)[AGENT_ENV.retentionFullDays] = "5";
    expect(of(P, plan)[0]!.message).toContain("runs every 3 d at worst");
    pgEnv(plan)[AGENT_ENV.retentionFullDays] = "6";
    expect(of(P, plan)).toEqual([]);
  });

  it("flags a missing or invalid schedule and a missing retention", () => {
    const plan = copy(compliantPlan());
    delete pgEnv(plan)[AGENT_ENV.scheduleFull];
    expect(of(P, plan)[0]!.message).toContain(`has no full-backup schedule (${AGENT_ENV.scheduleFull} is unset)`);
    pgEnv(plan)[AGENT_ENV.scheduleFull] = "0 25 * * *";
    expect(of(P, plan)[0]!.message).toMatch(/has an invalid KDR_SCHEDULE_FULL "0 25 \* \* \*": .+Fix: use a 5- or 6-field cron expression/);
    pgEnv(plan)[AGENT_ENV.scheduleFull] = "0 2 * * *";
    delete pgEnv(plan)[AGENT_ENV.retentionFullDays];
    expect(of(P, plan)[0]!.message).toContain(`declares no full-backup retention (${AGENT_ENV.retentionFullDays} is unset)`);
  });

  it("says so when the sidecar's settings are a secret as a whole", () => {
    const plan = copy(compliantPlan());
    containerSpec(plan, "postgres-sidecar-service").env = SECRET;
    expect(of(P, plan)[0]!.message).toContain("has a task spec or env that is a secret or unknown as a whole");
  });

  it("config: minFullBackups, advisory and disabled", () => {
    const plan = copy(compliantPlan());
    pgEnv(plan)[AGENT_ENV.retentionFullDays] = "2"; // two daily fulls: exactly enough by default
    expect(of(P, plan)).toEqual([]);
    expect(of(P, plan, { [P]: { minFullBackups: 3 } })[0]!.message).toContain("fewer than 3 full backups");
    expect(of(P, plan, { [P]: { minFullBackups: 3 }, enforcement: { [P]: "advisory" } })[0]!.enforcement).toBe("advisory");
    expect(of(P, plan, { [P]: { minFullBackups: 3 }, enforcement: { [P]: "disabled" } })).toEqual([]);
  });
});

// ---- 5 ----------------------------------------------------------------------------------------

describe("schedule-meets-rpo", () => {
  const P = "schedule-meets-rpo";
  const env = (plan: PlannedResource[], svc: string) => envOf(plan, `${svc}-sidecar-service`);

  it("passes continuous WAL for postgres and schedules for the others", () => {
    expect(of(P, compliantPlan())).toEqual([]);
  });

  it("flags a postgres WAL switch that cannot meet the RPO", () => {
    const plan = copy(compliantPlan());
    env(plan, "postgres")[AGENT_ENV.walSwitchSeconds] = "290";
    const v = of(P, plan);
    expect(v).toHaveLength(1);
    expect(v[0]!.message).toContain("switches WAL every 290 s; with 30 s to ship a segment that is 320 s of possible loss, over its RPO of 300 s");
    expect(v[0]!.message).toContain(`Fix: set ${AGENT_ENV.walSwitchSeconds} to at most 270`);
  });

  it("flags schedules whose worst gap exceeds the RPO", () => {
    const plan = copy(compliantPlan());
    env(plan, "redis")[AGENT_ENV.scheduleIncremental] = "0 */2 * * *";
    const v = of(P, plan);
    expect(v).toHaveLength(1);
    expect(v[0]!.message).toContain("can go 2 h between backups");
    expect(v[0]!.message).toContain(`Fix: schedule ${AGENT_ENV.scheduleIncremental} at least every 1 h`);
  });

  it("counts full and incremental runs together (02:00 full + 14:00 incremental = 12 h)", () => {
    const plan = copy(compliantPlan());
    env(plan, "grafana")[AGENT_ENV.scheduleIncremental] = "0 14 * * *";
    env(plan, "grafana")[AGENT_ENV.rpoSeconds] = String(12 * 3600);
    expect(of(P, plan)).toEqual([]);
    env(plan, "grafana")[AGENT_ENV.rpoSeconds] = String(11 * 3600);
    expect(of(P, plan)[0]!.message).toContain("can go 12 h between backups");
  });

  it("falls back to the schedules when postgres has no WAL switch (missing property), and hints at WAL", () => {
    const plan = copy(compliantPlan());
    delete env(plan, "postgres")[AGENT_ENV.walSwitchSeconds];
    const v = of(P, plan);
    expect(v).toHaveLength(1);
    expect(v[0]!.message).toContain("can go 6 h between backups");
    expect(v[0]!.message).toContain(`set ${AGENT_ENV.walSwitchSeconds} (continuous WAL) to at most 270`);
  });

  it("flags a sidecar with no usable schedule", () => {
    const plan = copy(compliantPlan());
    env(plan, "redis")[AGENT_ENV.scheduleFull] = "";
    env(plan, "redis")[AGENT_ENV.scheduleIncremental] = "";
    expect(of(P, plan)[0]!.message).toContain("has no valid backup schedule, so nothing meets its RPO of 3600 s");
  });

  it("reads the RPO from the protected service's label when the sidecar has none", () => {
    const plan = copy(compliantPlan());
    delete env(plan, "postgres")[AGENT_ENV.rpoSeconds];
    setLabel(find(plan, T.service, "postgres-sidecar-service"), LABELS.rpoSeconds, undefined);
    setLabel(find(plan, T.service, "postgres-service"), LABELS.rpoSeconds, "45");
    expect(of(P, plan)[0]!.message).toContain("over its RPO of 45 s");
  });

  it("config: walMarginSeconds, advisory and disabled", () => {
    const plan = copy(compliantPlan());
    env(plan, "postgres")[AGENT_ENV.walSwitchSeconds] = "200";
    expect(of(P, plan)).toEqual([]);
    expect(of(P, plan, { [P]: { walMarginSeconds: 120 } })).toHaveLength(1);
    expect(of(P, plan, { [P]: { walMarginSeconds: 120 }, enforcement: { [P]: "advisory" } })[0]!.enforcement).toBe("advisory");
    expect(of(P, plan, { [P]: { walMarginSeconds: 120 }, enforcement: { [P]: "disabled" } })).toEqual([]);
  });
});

// ---- 6 ----------------------------------------------------------------------------------------

describe("critical-bucket-replicated", () => {
  const P = "critical-bucket-replicated";
  const noReplicator = () => without(compliantPlan(), (r) => r.name === "replicator-kryonix-backups-critical-service");

  it("passes a critical bucket a replicator names", () => {
    expect(of(P, compliantPlan())).toEqual([]);
  });

  it("flags a critical bucket nothing replicates", () => {
    const v = of(P, noReplicator());
    expect(v).toHaveLength(1);
    expect(v[0]).toMatchObject({ resourceType: T.bucket, resourceName: "storage-critical" });
    expect(v[0]!.message).toContain('holds critical-tier backups (of "postgres") but nothing replicates it to the DR region');
    expect(v[0]!.message).toContain("Fix: declare its native replication");
  });

  it("calls only the primary's bucket critical (the one the sidecars write to), not its DR replica", () => {
    const plan = without(twoRegionPlan(), (r) => r.name === "replicator-kryonix-backups-critical-service");
    expect(of(P, plan).map((v) => v.resourceName)).toEqual(["primary-critical"]);
  });

  it("accepts a native replication command naming the bucket", () => {
    const plan = noReplicator();
    plan.push({
      type: T.command,
      name: "critical-replication",
      inputs: { create: "mc replicate add primary/kryonix-backups-critical --remote-bucket dr/kryonix-backups-critical --replicate delete-marker,existing-objects", environment: { MC_HOST_primary: SECRET } },
    });
    expect(of(P, plan)).toEqual([]);
  });

  it("does not take a replicator of another bucket, or a non-replicator naming it", () => {
    const plan = noReplicator();
    const other = structuredClone(compliantPlan().find((r) => r.name === "replicator-kryonix-backups-critical-service")!);
    ((other.inputs.taskSpec as Record<string, Record<string, Record<string, string>>>).containerSpec.env)[AGENT_ENV.s3Bucket] = "kryonix-backups-important";
    plan.push(other);
    expect(of(P, plan)).toHaveLength(1);
  });

  it("does not take a replicator that copies to the same endpoint", () => {
    const plan = copy(compliantPlan());
    envOf(plan, "replicator-kryonix-backups-critical-service")[AGENT_ENV.replicaEndpoint] = "http://172.18.0.1:7480/";
    expect(of(P, plan).map((v) => v.resourceName)).toEqual(["storage-critical"]);
  });

  it("treats a sidecar without a tier as not critical (missing property), and config criticalBuckets makes it critical", () => {
    const plan = noReplicator();
    delete envOf(plan, "postgres-sidecar-service")[AGENT_ENV.tier];
    setLabel(find(plan, T.service, "postgres-sidecar-service"), LABELS.tier, undefined);
    setLabel(find(plan, T.service, "postgres-service"), LABELS.tier, undefined);
    expect(of(P, plan)).toEqual([]);
    expect(of(P, plan, { [P]: { criticalBuckets: ["kryonix-backups-critical"] } })[0]!.message).toContain("is listed in criticalBuckets");
  });

  it("config: advisory and disabled", () => {
    expect(of(P, noReplicator(), { enforcement: { [P]: "advisory" } })[0]!.enforcement).toBe("advisory");
    expect(of(P, noReplicator(), { enforcement: { [P]: "disabled" } })).toEqual([]);
  });
});

// ---- 7 ----------------------------------------------------------------------------------------

describe("no-plaintext-credentials", () => {
  const P = "no-plaintext-credentials";

  it("passes secrets as [secret], *_FILE paths and secret files", () => {
    expect(of(P, compliantPlan())).toEqual([]);
  });

  it("flags a key in a service env, naming the variable and the fix", () => {
    const plan = copy(compliantPlan());
    envOf(plan, "postgres-sidecar-service").AWS_SECRET_ACCESS_KEY = "wJalrXUtnFEMI";
    const v = of(P, plan);
    expect(v).toHaveLength(1);
    expect(v[0]).toMatchObject({ resourceType: T.service, resourceName: "postgres-sidecar-service" });
    expect(v[0]!.message).toContain("environment variable AWS_SECRET_ACCESS_KEY");
    expect(v[0]!.message).toContain("Fix: deliver it as a Swarm secret file");
    expect(v[0]!.message).not.toContain("wJalrXUtnFEMI");
  });

  it("passes the same variable when its value is a Pulumi secret", () => {
    const plan = copy(compliantPlan());
    envOf(plan, "postgres-sidecar-service").AWS_SECRET_ACCESS_KEY = SECRET;
    expect(of(P, plan)).toEqual([]);
  });

  it("flags password, token and credential names, and a connection URL with a password", () => {
    const plan = copy(compliantPlan());
    const env = envOf(plan, "postgres-service");
    env.POSTGRES_PASSWORD = "hunter2";
    env.GF_AUTH_TOKEN = "abc";
    env.DATABASE_URL = "postgres://app:s3cr3t@postgres:5432/app";
    env.MONITOR_URL = "http://prometheus:9090/api"; // no password: fine
    const messages = of(P, plan).map((v) => v.message);
    expect(messages).toHaveLength(3);
    expect(messages.join("\n")).toContain("environment variable POSTGRES_PASSWORD");
    expect(messages.join("\n")).toContain("environment variable GF_AUTH_TOKEN");
    expect(messages.join("\n")).toContain("DATABASE_URL holds a connection URL with an embedded password");
  });

  it("flags -p/--password style arguments and inline assignments, not ports or mkdir -p", () => {
    const plan = copy(compliantPlan());
    containerSpec(plan, "redis-service").args = ["--requirepass", "x", "--port", "6379"];
    expect(of(P, plan)).toEqual([]); // --requirepass is not in the list of flag names; see below for the env-name rule
    containerSpec(plan, "redis-service").args = ["redis-cli", "-p", "6379", "-a", "hunter2"];
    expect(of(P, plan).map((v) => v.message)).toEqual([
      'docker:index/service:Service "redis-service" puts a credential in a plain command line: the argument -a. Fix: pass it through a secret file or a secret environment variable and refer to it by name ("$VAR"), never as the literal value.',
    ]);
    containerSpec(plan, "redis-service").args = ["sh", "-c", "cp -a backup restore && ls -a here"];
    expect(of(P, plan)).toEqual([]);
    containerSpec(plan, "redis-service").args = ["sh", "-c", "mkdir -p /data && PGPASSWORD=hunter2 pg_dump -h db"];
    expect(of(P, plan).map((v) => v.message).join("\n")).toContain("the inline assignment PGPASSWORD=...");
    containerSpec(plan, "redis-service").args = ["mysqldump", "--password=hunter2"];
    expect(of(P, plan).map((v) => v.message).join("\n")).toContain("the argument --password");
    containerSpec(plan, "redis-service").args = ["sh", "-c", 'pg_dump --password "$PGPASSWORD"'];
    expect(of(P, plan)).toEqual([]);
  });

  it("flags plain credentials in a local.Command's environment and command line", () => {
    const plan = copy(compliantPlan());
    const cmd = find(plan, T.command, "storage-critical-default-retention");
    (cmd.inputs.environment as Record<string, unknown>).AWS_SECRET_ACCESS_KEY = "plain";
    cmd.inputs.create = `${String(cmd.inputs.create)} && mc alias set primary http://172.18.0.1:7480 admin adminpassword`;
    const messages = of(P, plan).map((v) => v.message).join("\n");
    expect(messages).toContain("command environment variable AWS_SECRET_ACCESS_KEY");
    expect(messages).toContain("the keys of `mc alias set`");
    // A command line that is a secret as a whole cannot leak in plain text.
    cmd.inputs.create = SECRET;
    (cmd.inputs.environment as Record<string, unknown>).AWS_SECRET_ACCESS_KEY = SECRET;
    expect(of(P, plan)).toEqual([]);
  });

  it("flags credential inputs of providers' own resources given as plain strings (missing secret wrapper)", () => {
    const plan = copy(compliantPlan());
    find(plan, T.iamUser, "storage-sidecar-postgres-user").inputs.secret = "plain-secret-key";
    find(plan, T.dockerSecret, "postgres-sidecar-s3-secret-key").inputs.data = "cGxhaW4=";
    const v = of(P, plan);
    expect(v.map((x) => x.resourceName).sort()).toEqual(["postgres-sidecar-s3-secret-key", "storage-sidecar-postgres-user"]);
    expect(v[0]!.message).toMatch(/has its credential input "(secret|data)" as a plain string. Fix: pass it as a Pulumi secret/);
  });

  it("config: allowNames, credentialNames, advisory and disabled", () => {
    const plan = copy(compliantPlan());
    containerSpec(plan, "traefik-service").env = { TRAEFIK_PILOT_TOKEN: "not-a-secret-in-this-setup", SESSION_COOKIE: "abc" };
    expect(of(P, plan)).toHaveLength(1);
    expect(of(P, plan, { [P]: { allowNames: ["TRAEFIK_PILOT_TOKEN"] } })).toEqual([]);
    expect(of(P, plan, { [P]: { allowNames: ["TRAEFIK_PILOT_TOKEN"], credentialNames: "cookie" } }).map((v) => v.message).join()).toContain("SESSION_COOKIE");
    expect(of(P, plan, { enforcement: { [P]: "advisory" } })[0]!.enforcement).toBe("advisory");
    expect(of(P, plan, { enforcement: { [P]: "disabled" } })).toEqual([]);
  });
});

// ---- 8 ----------------------------------------------------------------------------------------

describe("sidecar-cannot-delete-backups", () => {
  const P = "sidecar-cannot-delete-backups";
  const pgPolicy = (plan: PlannedResource[]) => find(plan, T.iamPolicy, "storage-sidecar-postgres-policy");
  /** Adds statements; `dropDenies` first removes the document's own Deny (the lock guard), as an edit that loosens it would. */
  const withStatements = (plan: PlannedResource[], extra: unknown[], dropDenies = false) => {
    const doc = JSON.parse(String(pgPolicy(plan).inputs.policy)) as { Statement: Array<{ Effect?: string }> };
    if (dropDenies) doc.Statement = doc.Statement.filter((st) => st.Effect !== "Deny");
    doc.Statement.push(...(extra as Array<{ Effect?: string }>));
    pgPolicy(plan).inputs.policy = JSON.stringify(doc);
  };

  it("passes least-privilege sidecar policies (restic lock deletes allowed) and ignores the prune user", () => {
    expect(of(P, compliantPlan())).toEqual([]);
  });

  for (const action of ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:PutObjectRetention", "s3:PutBucketObjectLockConfiguration"]) {
    it(`flags ${action}`, () => {
      const plan = copy(compliantPlan());
      withStatements(plan, [{ Effect: "Allow", Action: [action], Resource: ["arn:aws:s3:::kryonix-backups-critical/full/postgres/*"] }], true);
      const v = of(P, plan);
      expect(v).toHaveLength(1);
      expect(v[0]).toMatchObject({ resourceType: T.iamPolicy, resourceName: "storage-sidecar-postgres-policy" });
      expect(v[0]!.message).toContain(`lets sidecar user "kdr-sidecar-postgres" delete backups or bypass retention: ${action}`);
      expect(v[0]!.message).toContain("Fix: allow only s3:PutObject, s3:GetObject and s3:ListBucket");
    });
  }

  it("flags wildcards (s3:*, s3:Delete*, a single-string Action) but honours a covering Deny", () => {
    const plan = copy(compliantPlan());
    withStatements(plan, [{ Effect: "Allow", Action: "s3:*", Resource: "arn:aws:s3:::*" }]);
    expect(of(P, plan)[0]!.message).toContain('s3:DeleteObject (through "s3:*")');
    withStatements(plan, [{ Effect: "Deny", Action: ["s3:Delete*", "s3:BypassGovernanceRetention", "s3:Put*Retention", "s3:PutBucketObjectLockConfiguration", "s3:PutLifecycleConfiguration"], Resource: ["*"] }]);
    expect(of(P, plan)).toEqual([]);
  });

  it("allows DeleteObject only on restic lock files", () => {
    const plan = copy(compliantPlan());
    withStatements(plan, [{ Effect: "Allow", Action: ["s3:DeleteObject"], Resource: ["arn:aws:s3:::kryonix-backups-critical/restic/postgres/g*/locks/*"] }]);
    expect(of(P, plan)).toEqual([]);
    withStatements(plan, [{ Effect: "Allow", Action: ["s3:DeleteObject"], Resource: ["arn:aws:s3:::kryonix-backups-critical/restic/postgres/*"] }]);
    expect(of(P, plan)).toHaveLength(1);
  });

  it("flags a built-in policy this stack does not declare, and an unparseable or secret document (missing property)", () => {
    const plan = copy(compliantPlan());
    find(plan, T.attachment, "storage-sidecar-redis-attachment").inputs.policyName = "readwrite";
    pgPolicy(plan).inputs.policy = "{not json";
    const grafana = find(plan, T.iamPolicy, "storage-sidecar-grafana-policy");
    grafana.inputs.policy = SECRET;
    const messages = of(P, plan).map((v) => v.message).join("\n");
    expect(messages).toContain('gives sidecar user "kdr-sidecar-redis" the policy "readwrite", which this stack does not declare');
    expect(messages).toContain("the policy document is not valid JSON");
    expect(messages).toContain("the policy document is a secret, so it cannot be audited");
  });

  it("config: sidecarUserPattern, forbiddenActions, advisory and disabled", () => {
    const plan = copy(compliantPlan());
    const prune = find(plan, T.iamPolicy, "storage-prune-policy");
    expect(String(prune.inputs.policy)).toContain("s3:DeleteObject");
    expect(of(P, plan, { [P]: { sidecarUserPattern: "sidecar|prune" } }).map((v) => v.resourceName)).toEqual(["storage-prune-policy"]);
    withStatements(plan, [{ Effect: "Allow", Action: ["s3:PutBucketPolicy"], Resource: ["arn:aws:s3:::kryonix-backups-critical"] }]);
    expect(of(P, plan)).toEqual([]);
    expect(of(P, plan, { [P]: { forbiddenActions: ["s3:PutBucketPolicy"] } })).toHaveLength(1);
    expect(of(P, plan, { [P]: { forbiddenActions: ["s3:PutBucketPolicy"] }, enforcement: { [P]: "advisory" } })[0]!.enforcement).toBe("advisory");
    expect(of(P, plan, { [P]: { forbiddenActions: ["s3:PutBucketPolicy"] }, enforcement: { [P]: "disabled" } })).toEqual([]);
  });
});

// ---- 9 ----------------------------------------------------------------------------------------

describe("no-public-bucket-policy", () => {
  const P = "no-public-bucket-policy";
  const seedCommand = (): PlannedResource => ({
    type: T.command,
    name: "seed-setup",
    inputs: { create: "docker exec -it kryonix_minio mc mb local/kryonix-backups\ndocker exec -it kryonix_minio mc policy set download local/kryonix-backups" },
  });

  it("passes private buckets and named-principal policies", () => {
    const plan = copy(compliantPlan());
    plan.push({
      type: T.bucketPolicy,
      name: "restore-read",
      inputs: { bucket: "kryonix-backups-critical", policy: JSON.stringify({ Statement: [{ Effect: "Allow", Principal: { AWS: ["arn:aws:iam:::user/kdr-restore"] }, Action: "s3:GetObject", Resource: "arn:aws:s3:::kryonix-backups-critical/*" }] }) },
    });
    expect(of(P, plan)).toEqual([]);
  });

  it("flags the seed's `mc policy set download`", () => {
    const v = of(P, [...compliantPlan(), seedCommand()]);
    expect(v).toHaveLength(1);
    expect(v[0]!.message).toContain('command:local:Command "seed-setup" makes a bucket anonymous ("mc policy set download")');
    expect(v[0]!.message).toContain("Fix: remove it");
  });

  it("flags `mc anonymous set public` in a service command", () => {
    const plan = copy(compliantPlan());
    containerSpec(plan, "traefik-service").args = ["sh", "-c", "mc anonymous set public local/kryonix-backups-secondary"];
    expect(of(P, plan)[0]!.message).toContain('makes a bucket anonymous ("mc anonymous set public")');
  });

  it('flags Principal "*" and {AWS: "*"} statements, and public acls', () => {
    for (const principal of ["*", { AWS: "*" }, { AWS: ["arn:aws:iam:::user/a", "*"] }]) {
      const plan = copy(compliantPlan());
      plan.push({ type: T.bucketPolicy, name: "p", inputs: { bucket: "kryonix-backups-critical", policy: JSON.stringify({ Statement: { Effect: "Allow", Principal: principal, Action: "s3:GetObject", Resource: "*" } }) } });
      expect(of(P, plan)[0]!.message).toContain('allows anonymous access (Principal "*") to bucket "kryonix-backups-critical"');
    }
    const plan = copy(compliantPlan());
    find(plan, T.bucket, "storage-secondary").inputs.acl = "public-read-write";
    expect(of(P, plan)[0]!.message).toContain('has the public acl "public-read-write"');
  });

  it("flags a bucket policy whose document cannot be read (missing property)", () => {
    const plan = [...compliantPlan(), { type: T.bucketPolicy, name: "p", inputs: { bucket: "b" } } as PlannedResource];
    expect(of(P, plan)[0]!.message).toContain("the policy document is missing");
  });

  it("config: advisory and disabled", () => {
    const plan = [...compliantPlan(), seedCommand()];
    expect(of(P, plan, { enforcement: { [P]: "advisory" } })[0]!.enforcement).toBe("advisory");
    expect(of(P, plan, { enforcement: { [P]: "disabled" } })).toEqual([]);
  });
});

// ---- 10 ---------------------------------------------------------------------------------------

describe("protected-service-declares-rpo-rto", () => {
  const P = "protected-service-declares-rpo-rto";
  const stripTargets = (plan: PlannedResource[], svc: string, which: "rpo" | "rto") => {
    const env = which === "rpo" ? AGENT_ENV.rpoSeconds : AGENT_ENV.rtoSeconds;
    const label = which === "rpo" ? LABELS.rpoSeconds : LABELS.rtoSeconds;
    delete envOf(plan, `${svc}-sidecar-service`)[env];
    setLabel(find(plan, T.service, `${svc}-sidecar-service`), label, undefined);
    setLabel(find(plan, T.service, `${svc}-service`), label, undefined);
  };

  it("passes targets on the sidecar env or on the service labels", () => {
    const plan = copy(compliantPlan());
    expect(of(P, plan)).toEqual([]);
    delete envOf(plan, "postgres-sidecar-service")[AGENT_ENV.rpoSeconds];
    setLabel(find(plan, T.service, "postgres-sidecar-service"), LABELS.rpoSeconds, undefined);
    expect(of(P, plan)).toEqual([]); // still on the postgres service's label
  });

  it("flags a missing RPO and a missing RTO, naming the protected service and both places to fix", () => {
    const plan = copy(compliantPlan());
    stripTargets(plan, "redis", "rpo");
    stripTargets(plan, "grafana", "rto");
    const v = of(P, plan);
    expect(v.map((x) => x.resourceName)).toEqual(["redis-service", "grafana-service"]);
    expect(v[0]!.message).toBe(
      `Protected service "redis" (docker:index/service:Service "redis-service") declares none for its RPO. Fix: set the label ${LABELS.rpoSeconds} on the service (or ${AGENT_ENV.rpoSeconds} on its sidecar) to the target in seconds.`,
    );
    expect(v[1]!.message).toContain("declares none for its RTO");
  });

  it("flags a target that is not a positive number of seconds", () => {
    const plan = copy(compliantPlan());
    stripTargets(plan, "redis", "rto");
    setLabel(find(plan, T.service, "redis-service"), LABELS.rtoSeconds, "15m");
    expect(of(P, plan)[0]!.message).toContain('declares "15m", which is not a positive number of seconds for its RTO');
  });

  it("names the sidecar when the protected service lives outside this stack", () => {
    const plan = without(copy(compliantPlan()), (r) => r.name === "redis-service");
    stripTargets([...plan, appService("redis", { image: "redis:7" })], "redis", "rpo");
    const v = of(P, plan);
    expect(v).toHaveLength(1);
    expect(v[0]!.resourceName).toBe("redis-sidecar-service");
  });

  it("config: advisory and disabled", () => {
    const plan = copy(compliantPlan());
    stripTargets(plan, "redis", "rpo");
    expect(of(P, plan, { enforcement: { [P]: "advisory" } })[0]!.enforcement).toBe("advisory");
    expect(of(P, plan, { enforcement: { [P]: "disabled" } })).toEqual([]);
  });
});

// A sidecar helper sanity check: the fixture builder itself must keep producing a protected pair.
describe("fixtures", () => {
  it("sidecar() declares a service that protects its target", () => {
    const svc = sidecar({ service: "x", engine: "redis", tier: "secondary", bucket: "b" }).find((r) => r.type === T.service)!;
    expect(JSON.stringify(svc.inputs.labels)).toContain(`"${LABELS.protects}","value":"x"`);
  });
});

describe("volume-sidecar-on-the-data-node", () => {
  const P = "volume-sidecar-on-the-data-node";
  const placement = (plan: PlannedResource[], name: string) => (find(plan, T.service, name).inputs.taskSpec as Record<string, unknown>);

  it("passes a volume sidecar pinned like its service", () => {
    expect(of(P, compliantPlan())).toEqual([]);
  });

  it("flags a volume sidecar with no placement constraint", () => {
    const plan = copy(compliantPlan());
    delete placement(plan, "grafana-sidecar-service").placement;
    const v = of(P, plan);
    expect(v).toHaveLength(1);
    expect(v[0]!.message).toContain('Backup sidecar "grafana-sidecar-service" ');
    expect(v[0]!.message).toContain("has no placement constraint: on a multi-node swarm it can start on a node where its volume is empty");
    expect(v[0]!.message).toContain('Fix: set kryonix-dr:services[].placement of "grafana" (e.g. ["node.labels.kryonix.grafana == true"]');
  });

  it("flags a sidecar pinned elsewhere than its service", () => {
    const plan = copy(compliantPlan());
    placement(plan, "grafana-sidecar-service").placement = { constraints: ["node.role == manager"] };
    expect(of(P, plan)[0]!.message).toContain(`lacks the protected service's placement constraint(s) "${GRAFANA_NODE}"`);
  });

  it("flags an unpinned protected service, whose data is wherever it last ran", () => {
    const plan = copy(compliantPlan());
    delete placement(plan, "grafana-service").placement;
    expect(of(P, plan)[0]!.message).toContain('Protected service "grafana" (docker:index/service:Service "grafana-service") keeps its data on a volume but has no placement constraint');
  });

  it("leaves database sidecars alone (they reach their service over the network)", () => {
    const plan = copy(compliantPlan());
    delete placement(plan, "postgres-sidecar-service").placement;
    expect(of(P, plan)).toEqual([]);
  });
});
