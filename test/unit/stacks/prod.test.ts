/**
 * The prod stack's resource graph, from Pulumi.prod.yaml as committed (secrets replaced by
 * recognisable test values), under Pulumi mocks.
 */
import type * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { AGENT_ENV, BACKUP_CLASSES, LABELS, SECRET_FILES } from "../../../contract/index.js";
import {
  byType,
  isSecret,
  labelsOf,
  one,
  plainLeaks,
  promiseOf,
  reveal,
  runProgram,
  setupMocks,
  stackFileConfig,
  testSecretValue,
  type Registration,
} from "../../support/mocks.js";

const SEED = ["postgresql", "redis", "minio", "traefik", "keycloak", "grafana", "prometheus", "nextcloud", "timescaledb"];
/** The seed's services and the catalog server itself (catalog.backup). */
const PROTECTED = [...SEED, "kdr-catalog"];
const T = {
  bucket: "minio:index/s3Bucket:S3Bucket",
  versioning: "minio:index/s3BucketVersioning:S3BucketVersioning",
  ilm: "minio:index/ilmPolicy:IlmPolicy",
  user: "minio:index/iamUser:IamUser",
  policy: "minio:index/iamPolicy:IamPolicy",
  attachment: "minio:index/iamUserPolicyAttachment:IamUserPolicyAttachment",
  command: "command:local:Command",
  service: "docker:index/service:Service",
  secret: "docker:index/secret:Secret",
  role: "postgresql:index/role:Role",
};

let regs: Registration[];
let secretKeys: string[];
let outputs: Record<string, unknown>;

beforeAll(async () => {
  const file = stackFileConfig("prod");
  secretKeys = file.secretKeys ?? [];
  regs = await setupMocks({ ...file, stack: "prod" });
  outputs = await runProgram();
});

const services = () => byType(regs, T.service);
const sidecarOf = (svc: string) => services().find((s) => labelsOf(s.inputs)[LABELS.protects] === svc && labelsOf(s.inputs)[LABELS.role] === "sidecar");
const envOf = (r: Registration) => (r.inputs.taskSpec as { containerSpec: { env: Record<string, string> } }).containerSpec.env;
const secretFilesOf = (r: Registration) => (r.inputs.taskSpec as { containerSpec: { secrets: Array<{ fileName: string; secretId: string }> } }).containerSpec.secrets;
const commandText = (r: Registration) => String(r.inputs.create ?? "");

describe("prod: sidecars", () => {
  it("declares one sidecar per protected service, with the service's schedules and targets", () => {
    for (const name of SEED) {
      const sidecar = sidecarOf(name);
      expect(sidecar, `sidecar for ${name}`).toBeDefined();
      const env = envOf(sidecar!);
      expect(env[AGENT_ENV.service]).toBe(name);
      expect(env[AGENT_ENV.scheduleFull]).toBe("0 2 * * *");
      expect(Number(env[AGENT_ENV.rpoSeconds])).toBeGreaterThan(0);
      expect(labelsOf(sidecar!.inputs)[LABELS.managed]).toBe("true");
    }
    expect(envOf(sidecarOf("redis")!)[AGENT_ENV.scheduleIncremental]).toBe("*/5 * * * *");
    expect(envOf(sidecarOf("postgresql")!)[AGENT_ENV.walSwitchSeconds]).toBe("30");
    // The weekly logical dump, as Pulumi.prod.yaml sets it; unset (timescaledb), the agent's default.
    expect(envOf(sidecarOf("postgresql")!)[AGENT_ENV.pgLogicalEveryDays]).toBe("7");
    expect(envOf(sidecarOf("timescaledb")!)[AGENT_ENV.pgLogicalEveryDays]).toBeUndefined();
    expect(envOf(sidecarOf("postgresql")!)[AGENT_ENV.rpoSeconds]).toBe("300");
  });

  it("mounts the protected volume read-only and keeps state on its own volume", () => {
    const spec = (sidecarOf("grafana")!.inputs.taskSpec as { containerSpec: { mounts: Array<Record<string, unknown>> } }).containerSpec;
    expect(spec.mounts).toContainEqual({ type: "volume", source: "kryonix_grafana_data", target: "/var/lib/grafana", readOnly: true });
    expect(spec.mounts.some((m) => m.target === "/var/lib/kryonix-dr" && !m.readOnly)).toBe(true);
  });

  it("Prometheus's sidecar takes TSDB snapshots and Nextcloud's switches maintenance mode; only these two mount their volume read-write", () => {
    expect(envOf(sidecarOf("prometheus")!)[AGENT_ENV.tsdbSnapshotUrl]).toBe("http://prometheus:9090");
    expect(envOf(sidecarOf("prometheus")!)[AGENT_ENV.hookPre]).toBeUndefined();
    expect(envOf(sidecarOf("nextcloud")!)[AGENT_ENV.maintenanceMode]).toBe("nextcloud");
    const dataMount = (name: string) =>
      (sidecarOf(name)!.inputs.taskSpec as { containerSpec: { mounts: Array<{ target: string; readOnly?: boolean }> } }).containerSpec.mounts.find((m) => m.target !== "/var/lib/kryonix-dr");
    // Prometheus's: the snapshot the API wrote is removed after its upload; Nextcloud's: config.php.
    for (const name of ["nextcloud", "prometheus"]) expect(dataMount(name)!.readOnly, name).toBe(false);
    for (const name of ["grafana", "minio", "keycloak", "traefik"]) expect(dataMount(name)!.readOnly, name).toBe(true);
  });

  it("gives sidecars the age recipient, never the identity, and only as files", () => {
    for (const name of SEED) {
      const files = secretFilesOf(sidecarOf(name)!).map((s) => s.fileName);
      expect(files).toContain("kdr-age-recipient");
      expect(files).not.toContain("kdr-age-identity");
      expect(files).toEqual(expect.arrayContaining(["kdr-s3-access-key", "kdr-s3-secret-key", "kdr-catalog-password"]));
    }
    expect(secretFilesOf(sidecarOf("postgresql")!).map((s) => s.fileName)).toContain("kdr-target-password");
    expect(secretFilesOf(sidecarOf("minio")!).map((s) => s.fileName)).toContain("kdr-restic-password");
  });

  it("places sidecars next to their data, with a healthcheck and limits", () => {
    const ts = sidecarOf("postgresql")!.inputs.taskSpec as Record<string, any>;
    expect(ts.placement.constraints).toContain("node.labels.kryonix.postgresql == true");
    expect(ts.containerSpec.healthcheck.tests).toEqual(["CMD", "node", "/opt/kryonix-dr/healthz.cjs"]);
    expect(ts.resources.limits).toEqual({ nanoCpus: 500_000_000, memoryBytes: 512 * 1024 * 1024 });
    expect(ts.networksAdvanceds).toEqual([{ id: "kryonix-backend" }]);
  });
});

describe("prod: buckets", () => {
  it("makes every bucket private, locked, versioned, with lifecycle and default retention", () => {
    const buckets = byType(regs, T.bucket);
    // Three tiers in each of the two regions.
    expect(buckets).toHaveLength(6);
    for (const b of buckets) {
      const name = b.inputs.bucket as string;
      expect(b.inputs.objectLocking).toBe(true);
      expect(b.inputs.acl).toBe("private");
      const versioning = byType(regs, T.versioning).filter((v) => v.inputs.bucket === name && v.provider === b.provider);
      expect(versioning.map((v) => (v.inputs.versioningConfiguration as { status: string }).status)).toEqual(["Enabled"]);
      const ilm = byType(regs, T.ilm).filter((v) => v.inputs.bucket === name && v.provider === b.provider);
      expect(ilm).toHaveLength(1);
      const rules = ilm[0]!.inputs.rules as Array<{ filter?: string; expiration: string; noncurrentVersionExpirationDays: number }>;
      const retention = byType(regs, T.command).filter((c) => commandText(c).includes(`put-default-retention --bucket ${name} `) && c.name.startsWith(b.name));
      expect(retention, `default retention for ${b.name}`).toHaveLength(1);
      const days = Number(/--days (\d+)/.exec(commandText(retention[0]!))![1]);
      // Never locked shorter than the lifecycle keeps it; noncurrent versions go once the lock lapsed.
      for (const r of rules) {
        if (r.expiration.endsWith("d")) expect(days).toBeGreaterThanOrEqual(parseInt(r.expiration, 10));
        expect(r.noncurrentVersionExpirationDays).toBe(days);
      }
      expect(rules.some((r) => r.filter === undefined && r.expiration === "DeleteMarker")).toBe(true);
    }
    expect(byType(regs, "minio:index/s3BucketPolicy:S3BucketPolicy")).toHaveLength(0);
  });

  it("keeps full 30 d, incremental 7 d and WAL for the PITR window, per class prefix", () => {
    const critical = byType(regs, T.ilm).find((i) => i.name === "primary-critical-lifecycle")!;
    const rules = critical.inputs.rules as Array<{ id: string; filter?: string; expiration: string }>;
    expect(rules.find((r) => r.filter === "full/postgresql/")!.expiration).toBe("30d");
    expect(rules.find((r) => r.filter === "incremental/redis/")!.expiration).toBe("7d");
    expect(rules.find((r) => r.filter === "wal/timescaledb/")!.expiration).toBe("7d");
    // restic prunes its own repository; lifecycle must not expire packs that snapshots share.
    expect(rules.find((r) => r.filter === "restic/postgresql/")!.expiration).toBe("DeleteMarker");
    expect(rules.filter((r) => r.filter?.endsWith("/postgresql/"))).toHaveLength(BACKUP_CLASSES.length);
  });

  it("sets quota and SSE from config", () => {
    const critical = one(regs, T.bucket, "primary-critical");
    expect(critical.inputs.quota).toBe(2000 * 1024 ** 3);
    const sse = byType(regs, "minio:index/s3BucketServerSideEncryption:S3BucketServerSideEncryption");
    expect(sse).toHaveLength(6);
    expect(sse[0]!.inputs).toMatchObject({ encryptionType: "aws:kms", kmsKeyId: "kryonix-dr-backups" });
  });
});

describe("prod: least privilege", () => {
  const statementsOf = (userName: string) => {
    const att = byType(regs, T.attachment).find((a) => a.inputs.userName === userName)!;
    const policy = byType(regs, T.policy).find((p) => p.inputs.name === att.inputs.policyName)!;
    return JSON.parse(policy.inputs.policy as string).Statement as Array<{ Effect: string; Action: string[]; Resource: string[] }>;
  };
  /** What a user's policy grants (its Deny statements take rights away, never add them). */
  const allowsOf = (userName: string) => statementsOf(userName).filter((s) => s.Effect === "Allow");

  it("gives every sidecar its own user that writes and reads only its own prefixes", () => {
    for (const name of SEED) {
      const user = one(regs, T.user, `primary-sidecar-${name}-user`);
      expect(user.inputs.name).toBe(`kdr-prod-sidecar-${name}`);
      expect((user.inputs.tags as Record<string, string>)[LABELS.role]).toBe("sidecar");
      const statements = allowsOf(`kdr-prod-sidecar-${name}`);
      const actions = statements.flatMap((s) => s.Action);
      expect(statementsOf(`kdr-prod-sidecar-${name}`).find((s) => s.Effect === "Deny")?.Action).toContain("s3:BypassGovernanceRetention");
      for (const forbidden of ["s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:PutObjectRetention", "s3:PutBucketObjectLockConfiguration", "s3:*"]) {
        expect(actions).not.toContain(forbidden);
      }
      for (const s of statements) {
        for (const resource of s.Resource) {
          if (resource.includes("/")) expect(resource).toMatch(new RegExp(`^arn:aws:s3:::[^/]+/(${BACKUP_CLASSES.join("|")})/${name}/`));
        }
        if (s.Action.includes("s3:DeleteObject")) expect(s.Resource).toEqual([expect.stringMatching(new RegExp(`/restic/${name}/g\\*/locks/\\*$`))]);
      }
    }
  });

  it("has a separate read-only restore user and a prune user that cannot remove versions", () => {
    const restore = allowsOf("kdr-prod-restore").flatMap((s) => s.Action);
    expect(restore).toContain("s3:GetObject");
    expect(restore.filter((a) => /Put|Delete|Bypass/.test(a))).toEqual([]);
    const prune = allowsOf("kdr-prod-prune");
    for (const s of prune) {
      if (s.Action.includes("s3:PutObject")) for (const r of s.Resource) expect(r).toMatch(/\/restic\/\*$/);
    }
    expect(prune.flatMap((s) => s.Action).filter((a) => /DeleteObjectVersion|Bypass|Retention/.test(a))).toEqual([]);
  });
});

describe("prod: replication, catalog, crons, monitoring", () => {
  it("replicates every primary bucket natively toward the DR region, without deletes", () => {
    const primary = byType(regs, T.bucket).filter((b) => b.name.startsWith("primary-"));
    for (const b of primary) {
      const cmd = byType(regs, T.command).find((c) => commandText(c).startsWith(`mc replicate add kdrsrc/${b.inputs.bucket} `));
      expect(cmd, `replication of ${b.inputs.bucket}`).toBeDefined();
      expect(commandText(cmd!)).toContain('--replicate "existing-objects,metadata-sync"');
      expect(String(cmd!.inputs.delete)).toContain(`mc replicate rm --all --force kdrsrc/${b.inputs.bucket}`);
      expect(isSecret(cmd!.inputs.environment)).toBe(true);
      const target = reveal<Record<string, string>>(cmd!.inputs.environment).KDR_REPLICATION_TARGET!;
      expect(target).toMatch(new RegExp(`^https://kdr-prod-replication:[^@]+@s3\\.dr\\.kryonix\\.internal:9000/${b.inputs.bucket}$`));
    }
  });

  it("declares the catalog database, roles, grants and the migration step", () => {
    const roles = byType(regs, T.role);
    expect(roles.map((r) => r.inputs.name).sort()).toEqual(["kryonix_dr_agent", "kryonix_dr_dashboard", "kryonix_dr_owner", "kryonix_dr_replication"]);
    expect(roles.find((r) => r.inputs.name === "kryonix_dr_agent")!.inputs.roles).toEqual(["kryonix_dr_writer"]);
    expect(roles.find((r) => r.inputs.name === "kryonix_dr_dashboard")!.inputs.roles).toEqual(["kryonix_dr_reader"]);
    expect(one(regs, "postgresql:index/database:Database", "catalog-database").inputs.name).toBe("kryonix_dr");
    const migrate = one(regs, T.command, "catalog-migrate");
    expect(migrate.inputs.create).toBe("node bin/kryonix-dr.mjs migrate");
    expect((migrate.inputs.triggers as string[])[0]).toMatch(/^[0-9a-f]{64}$/);
    const env = reveal<Record<string, string>>(migrate.inputs.environment);
    expect(env).toMatchObject({ PGDATABASE: "kryonix_dr", PGUSER: "kryonix_dr_owner", PGSSLMODE: "require" });
    const grants = byType(regs, "postgresql:index/grant:Grant");
    expect(grants.filter((g) => (g.inputs.privileges as string[]).includes("CONNECT")).map((g) => g.inputs.role).sort()).toEqual(["kryonix_dr_agent", "kryonix_dr_dashboard"]);
  });

  it("protects the catalog server like a critical PostgreSQL: a REPLICATION login, its slot, a sidecar streaming WAL", () => {
    const role = byType(regs, T.role).find((r) => r.inputs.name === "kryonix_dr_replication")!;
    expect(role.inputs).toMatchObject({ login: true, replication: true });
    expect(isSecret(role.inputs.password)).toBe(true);
    expect(reveal(role.inputs.password)).toBe(testSecretValue("catalogReplicationPassword"));
    const switchWal = byType(regs, "postgresql:index/grant:Grant").find((g) => g.inputs.role === "kryonix_dr_replication")!;
    expect(switchWal.inputs).toMatchObject({ objectType: "function", schema: "pg_catalog", objects: ["pg_switch_wal"], privileges: ["EXECUTE"] });
    expect(one(regs, "postgresql:index/physicalReplicationSlot:PhysicalReplicationSlot", "catalog-backup-slot").inputs.name).toBe("kdr_kdr_catalog");
    const sidecar = sidecarOf("kdr-catalog")!;
    const env = envOf(sidecar);
    expect(env).toMatchObject({
      [AGENT_ENV.engine]: "postgres",
      [AGENT_ENV.tier]: "critical",
      [AGENT_ENV.targetHost]: "postgresql-catalog.kryonix.internal",
      [AGENT_ENV.targetPort]: "5432",
      [AGENT_ENV.targetUser]: "kryonix_dr_replication",
      [AGENT_ENV.s3Bucket]: "kdr-prod-backups-critical",
      // Its login reads no database: no logical dumps, base + WAL only.
      [AGENT_ENV.pgLogicalDumps]: "none",
    });
    expect(envOf(sidecarOf("postgresql")!)[AGENT_ENV.pgLogicalDumps]).toBeUndefined();
    expect(secretFilesOf(sidecar).map((f) => f.fileName)).toContain("kdr-target-password");
  });

  it("runs the seed's maintenance and drill schedules", () => {
    const cron = (purpose: string) => services().find((s) => labelsOf(s.inputs)[LABELS.role] === `cron-${purpose}`)!;
    const jobs = (r: Registration) => JSON.parse(envOf(r)[AGENT_ENV.cronJobs]!) as Array<{ name: string; schedule: string; command: string[] }>;
    const maintenance = jobs(cron("maintenance"));
    expect(maintenance).toHaveLength(2 * PROTECTED.length);
    for (const name of PROTECTED) {
      const health = maintenance.find((j) => j.name === `health-${name}`)!;
      expect(health.schedule).toBe("0 */2 * * *");
      expect(health.command.slice(0, 3)).toEqual(["health", "--service", name]);
      expect(health.command[health.command.indexOf("--s3-bucket") + 1]).toMatch(/^kdr-prod-backups-(critical|important|secondary)$/);
      expect(maintenance.find((j) => j.name === `prune-${name}`)!.schedule).toBe("0 3 * * 0");
    }
    const redisHealth = maintenance.find((j) => j.name === "health-redis")!.command;
    expect(redisHealth.slice(0, 12)).toEqual(["health", "--service", "redis", "--engine", "redis", "--tier", "critical", "--s3-bucket", "kdr-prod-backups-critical", "--rpo-seconds", "300", "--rto-seconds"]);
    const drill = cron("drill");
    const drillJobs = jobs(drill);
    expect(drillJobs.map((j) => j.name).sort()).toEqual(PROTECTED.flatMap((n) => [`verify-new-${n}`, `verify-${n}`, `restore-drill-${n}`]).sort());
    for (const j of drillJobs) expect(j.schedule).toBe(j.name.startsWith("verify-new-") ? "*/15 * * * *" : "0 4 * * 6");
    // Each new backup is verified within 15 minutes, in the one container that holds the key.
    expect(drillJobs.find((j) => j.name === "verify-new-postgresql")!.command.slice(0, 4)).toEqual(["verify", "--pending", "--service", "postgresql"]);
    expect(drillJobs.find((j) => j.name === "restore-drill-grafana")!.command.slice(0, 6)).toEqual(["restore", "--target", "/var/lib/kryonix-dr/drill/grafana", "--clean-target", "--service", "grafana"]);
    expect(secretFilesOf(drill).map((s) => s.fileName)).toContain("kdr-age-identity");
    expect(secretFilesOf(cron("maintenance")).map((s) => s.fileName)).not.toContain("kdr-age-identity");
  });

  it("generates scrape config and alert rules from the thresholds, and keeps notification targets secret", () => {
    const rules = one(regs, "docker:index/serviceConfig:ServiceConfig", "monitoring-alert-rules").inputs.dataRaw as string;
    expect(rules).toContain("max by (service) (kdr_rpo_target_seconds) * 0.8");
    expect(rules).toContain("max by (service) (kdr_wal_lag_seconds) > on(service) max by (service) (kdr_rpo_target_seconds)");
    expect(rules).toContain("kdr_replication_lag_seconds > 900");
    const scrape = one(regs, "docker:index/serviceConfig:ServiceConfig", "monitoring-scrape").inputs.dataRaw as string;
    expect(scrape).toContain("port: 9469");
    expect(isSecret(one(regs, T.secret, "monitoring-notification-targets").inputs.data)).toBe(true);
  });

  it("the notify relay alone holds the targets; every sidecar and cron posts its events to it by name", () => {
    const relay = one(regs, T.service, "monitoring-notify");
    expect(relay.inputs.name).toBe("kdr-prod-notify");
    expect((relay.inputs.taskSpec as { containerSpec: { commands: string[] } }).containerSpec.commands.slice(-1)).toEqual(["notify-relay"]);
    expect(secretFilesOf(relay).map((x) => x.fileName)).toEqual(["kdr-notification-targets"]);
    const agents = services().filter((r) => ["sidecar", "cron-maintenance", "cron-drill"].includes(labelsOf(r.inputs)[LABELS.role]!));
    expect(agents.length).toBe(12);
    for (const a of agents) {
      expect(envOf(a)[AGENT_ENV.notifyUrl], a.name).toBe("http://kdr-prod-notify:9469");
      expect(secretFilesOf(a).map((x) => x.fileName), a.name).not.toContain("kdr-notification-targets");
    }
  });

  it("exports the same scrape config and rule file as outputs, for a Prometheus the platform already runs", async () => {
    const m = outputs.monitoring as { scrapeConfig: pulumi.Output<string>; alertRules: pulumi.Output<string> };
    expect(await promiseOf(m.scrapeConfig)).toBe(one(regs, "docker:index/serviceConfig:ServiceConfig", "monitoring-scrape").inputs.dataRaw);
    const rules = await promiseOf(m.alertRules);
    expect(rules).toBe(one(regs, "docker:index/serviceConfig:ServiceConfig", "monitoring-alert-rules").inputs.dataRaw);
    expect(rules).toContain("alert: KryonixDrRpoBreached");
  });

  it("exports the Grafana dashboard as JSON (its queries are run in dashboard.test.ts)", () => {
    const d = JSON.parse((outputs.monitoring as { dashboard: string }).dashboard) as { uid: string; panels: unknown[] };
    expect(d.uid).toBe("kryonix-dr");
    expect(d.panels.length).toBeGreaterThanOrEqual(10);
  });

  it("exports what the DR stack reads", async () => {
    expect(Object.keys(outputs)).toEqual(expect.arrayContaining(["drBuckets", "drRestoreCredentials", "catalog", "services"]));
  });
});

describe("prod: every credential is a secret", () => {
  it("never shows a configured secret in plain inputs", () => {
    expect(plainLeaks(regs, secretKeys.map(testSecretValue))).toEqual([]);
  });

  it("never shows a generated S3 secret key in plain inputs", () => {
    const generated = byType(regs, T.user).map((u) => `generated-secret-key-of-${u.name}`);
    expect(plainLeaks(regs, generated)).toEqual([]);
  });

  it("marks every credential input secret", () => {
    for (const s of byType(regs, T.secret)) expect(isSecret(s.inputs.data), s.name).toBe(true);
    for (const p of byType(regs, "pulumi:providers:minio")) {
      expect(isSecret(p.inputs.minioUser)).toBe(true);
      expect(isSecret(p.inputs.minioPassword)).toBe(true);
    }
    expect(isSecret(one(regs, "pulumi:providers:postgresql", "catalog").inputs.password)).toBe(true);
    for (const r of byType(regs, T.role)) expect(isSecret(r.inputs.password)).toBe(true);
    for (const c of byType(regs, T.command)) expect(isSecret(c.inputs.environment), c.name).toBe(true);
  });

  it("keeps credentials out of every container's env (the task spec holds no secret at all)", () => {
    for (const s of services()) {
      expect(isSecret(s.inputs.taskSpec), s.name).toBe(false);
      for (const key of Object.keys(envOf(s))) expect(Object.values(AGENT_ENV)).toContain(key);
    }
    expect(Object.values(SECRET_FILES).length).toBeGreaterThan(0);
  });
});

describe("prod: immutability", () => {
  it("lets the bucket's default retention lock sidecar uploads (sidecars may not set retention themselves)", () => {
    for (const s of services()) expect(envOf(s)[AGENT_ENV.lockMode], s.name).toBeUndefined();
    expect(byType(regs, T.command).filter((c) => commandText(c).includes("put-default-retention --bucket")).length).toBe(6);
  });
});
