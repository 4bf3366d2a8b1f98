import { describe, expect, it } from "vitest";
import { ENGINES } from "../../contract/index.js";
import { ConfigError, DEFAULTS, parseSpecs, type RawConfig } from "../../stacks/config.js";
import { stackFileConfig } from "../support/mocks.js";

const ALL_SECRETS = new Set([
  "primaryAccessKey",
  "primarySecretKey",
  "drAccessKey",
  "drSecretKey",
  "catalogAdminPassword",
  "catalogOwnerPassword",
  "catalogWriterPassword",
  "catalogReaderPassword",
  "catalogReplicationPassword",
  "ageRecipient",
  "ageIdentity",
  "resticPassword",
  "targetPassword-pg",
]);

function base(): RawConfig {
  return {
    stack: "prod",
    regions: {
      primary: { name: "r1", endpoint: "https://s3.one.example:9000" },
      dr: { name: "r2", endpoint: "https://s3.two.example:9000" },
    },
    catalog: { host: "catalog.example" },
    services: [
      { name: "pg", engine: "postgres", tier: "critical" },
      { name: "files", engine: "volume", tier: "secondary", volume: "files_data", placement: ["node.labels.kryonix.files == true"] },
    ],
  };
}

/** Parses and returns the ConfigError's message (fails the test when parsing succeeds). */
function errorOf(raw: RawConfig, present: ReadonlySet<string> = ALL_SECRETS): string {
  try {
    parseSpecs(raw, present);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error("expected a ConfigError");
}

describe("parseSpecs defaults (the seed's)", () => {
  it("fills schedules, retention and targets from the seed", () => {
    const specs = parseSpecs(base(), ALL_SECRETS);
    const files = specs.services.find((s) => s.name === "files")!;
    expect(files.schedules).toEqual({ full: "0 2 * * *", incremental: "0 */6 * * *" });
    expect(files.retention).toEqual({ fullDays: 30, incrementalDays: 7, walDays: 7 });
    expect(files.rpoSeconds).toBe(24 * 3600);
    expect(files.achievableRpoSeconds).toBe(6 * 3600);
    // Secondary data is P2 unless it says otherwise: 4 h to recover.
    expect(files.priority).toBe("P2");
    expect(files.rtoSeconds).toBe(4 * 3600);
    const pg = specs.services.find((s) => s.name === "pg")!;
    expect(pg.priority).toBe("P0");
    expect(pg.rtoSeconds).toBe(15 * 60);
    expect(pg.rpoSeconds).toBe(300);
    // Continuous WAL: 30 s forced switch + 30 s upload margin = the 60 s we aim for.
    expect(pg.achievableRpoSeconds).toBe(60);
    expect(specs.maintenance).toEqual({ health: "0 */2 * * *", prune: "0 3 * * 0", drill: "0 4 * * 6", verify: "*/15 * * * *" });
    expect(specs.storage.lockMode).toBe("GOVERNANCE");
    expect(specs.role).toBe("prod");
  });

  it("accepts per-service overrides of schedules, retention and targets", () => {
    const raw = base();
    raw.services![1] = { ...raw.services![1]!, schedules: { incremental: "*/10 * * * *" }, retention: { fullDays: 90 }, rpoSeconds: 900, rtoSeconds: 3600 };
    const files = parseSpecs(raw, ALL_SECRETS).services[1]!;
    expect(files.schedules.incremental).toBe("*/10 * * * *");
    expect(files.retention.fullDays).toBe(90);
    expect(files.achievableRpoSeconds).toBe(600);
    expect(files.rtoSeconds).toBe(3600);
  });

  it("a service's priority (P0..P3) sets its RTO; its own rtoSeconds and defaults.rtoSeconds come first; a bad one is named", () => {
    const raw = base();
    raw.services![1] = { ...raw.services![1]!, priority: "P3" };
    expect(parseSpecs(raw, ALL_SECRETS).services[1]).toMatchObject({ priority: "P3", rtoSeconds: 24 * 3600 });
    raw.services![1] = { ...raw.services![1]!, priority: "P1", rtoSeconds: 600 };
    expect(parseSpecs(raw, ALL_SECRETS).services[1]).toMatchObject({ priority: "P1", rtoSeconds: 600 });
    const d = base();
    d.defaults = { rtoSeconds: 1800 };
    expect(parseSpecs(d, ALL_SECRETS).services.map((s) => s.rtoSeconds)).toEqual([1800, 1800]);
    const bad = base();
    bad.services![0] = { ...bad.services![0]!, priority: "urgent" };
    expect(errorOf(bad)).toContain('kryonix-dr:services[0].priority: unknown value "urgent"; accepted: P0, P1, P2, P3');
  });

  it("expresses the full seed list in Pulumi.prod.yaml", () => {
    const { config, secretKeys } = stackFileConfig("prod");
    const specs = parseSpecs({ ...(config as unknown as RawConfig), stack: "prod" }, new Set([...Object.keys(config), ...(secretKeys ?? [])]));
    expect(specs.services.map((s) => s.name).sort()).toEqual(
      ["postgresql", "redis", "minio", "traefik", "keycloak", "grafana", "prometheus", "nextcloud", "timescaledb"].sort(),
    );
    const engine = Object.fromEntries(specs.services.map((s) => [s.name, s.engine]));
    expect(engine).toMatchObject({ timescaledb: "postgres", postgresql: "postgres", redis: "redis", minio: "volume", traefik: "volume", keycloak: "volume", grafana: "volume", prometheus: "volume", nextcloud: "volume" });
    for (const s of specs.services) expect(s.achievableRpoSeconds).toBeLessThanOrEqual(s.rpoSeconds);
  });

  it("parses every committed stack file", () => {
    for (const stack of ["prod", "dr", "recovery", "local"]) {
      const { config, secretKeys } = stackFileConfig(stack);
      const specs = parseSpecs({ ...(config as unknown as RawConfig), stack }, new Set([...Object.keys(config), ...(secretKeys ?? [])]));
      expect(specs.role).toBe(stack);
    }
  });

  it("reads a recovery point as latest, a timestamp or a backup id", () => {
    const rec = (point?: string) => parseSpecs({ ...base(), stack: "recovery", recovery: { point } }, ALL_SECRETS).recovery!.point;
    expect(rec(undefined)).toEqual({ kind: "latest" });
    expect(rec("2026-11-28T21:00:00+01:00")).toEqual({ kind: "time", at: "2026-11-28T20:00:00.000Z" });
    expect(rec("0b6c2a8e-3f0a-4c11-9a57-0d2f8e6b1c44")).toEqual({ kind: "backup", id: "0b6c2a8e-3f0a-4c11-9a57-0d2f8e6b1c44" });
    expect(errorOf({ ...base(), stack: "recovery", recovery: { point: "yesterday" } })).toMatch(/kryonix-dr:recovery\.point: .*"latest", an ISO timestamp/);
  });
});

describe("parseSpecs rejects bad config with the key and the fix", () => {
  it("monitoring.prometheus without an image, or with a port that is not one", () => {
    const raw = base();
    raw.monitoring = { prometheus: { publishedPort: 70000 } };
    const msg = errorOf(raw);
    expect(msg).toContain("kryonix-dr:monitoring.prometheus.image: Prometheus needs its image");
    expect(msg).toContain("kryonix-dr:monitoring.prometheus.publishedPort: must be a TCP port (1-65535), got 70000");
    raw.monitoring = { prometheus: { image: "prom/prometheus:v2.42.0" } };
    expect(parseSpecs(raw, ALL_SECRETS).monitoring.prometheus).toEqual({ image: "prom/prometheus:v2.42.0", scrapeIntervalSeconds: 15, groupIntervalSeconds: 60, publishedPort: undefined });
  });

  it("invalid cron", () => {
    const raw = base();
    raw.services![0]!.schedules = { full: "0 25 * * *" };
    const msg = errorOf(raw);
    expect(msg).toContain("kryonix-dr:services[0].schedules.full: invalid cron \"0 25 * * *\"");
    expect(msg).toContain("use 5 fields (minute hour day month weekday");
  });

  it("a cron with the wrong number of fields", () => {
    expect(errorOf({ ...base(), maintenance: { drill: "0 4 * *" } })).toMatch(/kryonix-dr:maintenance\.drill: invalid cron "0 4 \* \*".*5 fields/);
  });

  it("a cron that never fires (February 31st)", () => {
    expect(errorOf({ ...base(), maintenance: { drill: "0 4 31 2 *" } })).toContain(
      'kryonix-dr:maintenance.drill: cron "0 4 31 2 *" never fires (no such date, e.g. February 31st): pick a day every month has, e.g. "0 2 1 * *"',
    );
    const raw = base();
    raw.services![0]!.schedules = { full: "0 2 30 2 *" };
    expect(errorOf(raw)).toContain('kryonix-dr:services[0].schedules.full: cron "0 2 30 2 *" never fires');
  });

  it("retention that is not a whole number of days from 1 to 3650 (a compliance lock of 100000 days could never be undone)", () => {
    for (const bad of [-1, 0, 1.5, 100000, "30"]) {
      const raw = base();
      raw.services![1] = { ...raw.services![1]!, retention: { fullDays: bad as number } };
      expect(errorOf(raw), String(bad)).toContain(`kryonix-dr:services[1].retention.fullDays: must be a whole number of days from 1 to 3650, got ${JSON.stringify(bad)}`);
    }
    const huge = base();
    huge.defaults = { retention: { walDays: 100000 } };
    expect(errorOf(huge)).toContain("kryonix-dr:defaults.retention.walDays: must be a whole number of days from 1 to 3650, got 100000 (objects under a compliance lock could not be deleted for 274 years); set it with 'pulumi config set --path kryonix-dr:defaults.retention.walDays <days>'");
    const ok = base();
    ok.services![1] = { ...ok.services![1]!, retention: { fullDays: 3650 } };
    expect(parseSpecs(ok, ALL_SECRETS).services.find((x) => x.name === "files")!.retention.fullDays).toBe(3650);
  });

  it("names Swarm would refuse or that would run past its 63 characters: a trailing '-', too long, a bad prefix", () => {
    for (const name of ["pg-", "Pg", "1pg", "p".repeat(32)]) {
      const raw = base();
      raw.services![0]!.name = name;
      expect(errorOf(raw), name).toContain(`kryonix-dr:services[0].name: must be lowercase letters, digits and '-' (at most 31, starting with a letter, not ending in '-'), got ${JSON.stringify(name)}`);
    }
    const longest = base();
    longest.namePrefix = "k".repeat(21);
    longest.services![0]!.name = "p".repeat(31);
    expect(`${longest.namePrefix}-${parseSpecs(longest, new Set([...ALL_SECRETS, `targetPassword-${"p".repeat(31)}`])).services[0]!.name}-backup`.length).toBeLessThanOrEqual(63);
    expect(errorOf({ ...base(), namePrefix: "kdr-" })).toContain(`kryonix-dr:namePrefix: must be lowercase letters, digits and '-', at most 21 characters, starting with a letter and not ending in '-', got "kdr-"`);
    expect(errorOf({ ...base(), stack: "recovery", recovery: { serviceNamePrefix: "x".repeat(22) } })).toContain("kryonix-dr:recovery.serviceNamePrefix: must be lowercase letters");
    expect(parseSpecs({ ...base(), stack: "recovery", recovery: { serviceNamePrefix: "kdr-aside" } }, ALL_SECRETS).recovery!.serviceNamePrefix).toBe("kdr-aside");
  });

  it("a recovery point in the future: nothing was backed up then", () => {
    const at = new Date(Date.now() + 3_600_000).toISOString();
    expect(errorOf({ ...base(), stack: "recovery", recovery: { point: at } })).toMatch(
      new RegExp(`kryonix-dr:recovery\\.point: ${at.replace(/[.]/g, "\\.")} is in the future \\(this machine's clock reads .*\\): nothing has been backed up at that moment yet; choose a time at or before now, or "latest"`),
    );
  });

  it("unknown engine", () => {
    const raw = base();
    raw.services![1]!.engine = "mongodb";
    const msg = errorOf(raw);
    expect(msg).toContain(`kryonix-dr:services[1].engine: unknown engine "mongodb" for service "files"; accepted: ${ENGINES.join(", ")}`);
  });

  it("retention shorter than the full-backup interval", () => {
    const raw = base();
    raw.services![1] = { ...raw.services![1]!, schedules: { full: "0 2 * * 0" }, retention: { fullDays: 3 } };
    const msg = errorOf(raw);
    expect(msg).toContain("kryonix-dr:services[1].retention.fullDays: 3 d is shorter than the full-backup interval of \"files\" (7 d from \"0 2 * * 0\")");
    expect(msg).toContain("raise retention.fullDays to at least 7");
  });

  it("an RPO no schedule can meet (volume, redis)", () => {
    const raw = base();
    raw.services![1]!.tier = "critical";
    const msg = errorOf(raw);
    expect(msg).toContain("kryonix-dr:services[1].rpoSeconds: RPO target 300 s of \"files\" (tier critical) cannot be met");
    expect(msg).toContain("set services[1].schedules.incremental to run at least every 300 s (e.g. \"*/5 * * * *\"; the shortest configured interval is 21600 s)");
  });

  it("an RPO continuous WAL cannot meet (postgres)", () => {
    const raw = base();
    raw.services![0] = { ...raw.services![0]!, rpoSeconds: 45 };
    const msg = errorOf(raw);
    expect(msg).toContain("kryonix-dr:services[0].rpoSeconds: RPO target 45 s of \"pg\" (tier critical) cannot be met");
    expect(msg).toContain("lower services[0].walSwitchSeconds (continuous WAL achieves walSwitchSeconds + 30 s upload margin = 60 s)");
  });

  it("a missing secret", () => {
    const present = new Set([...ALL_SECRETS].filter((k) => k !== "targetPassword-pg" && k !== "drSecretKey"));
    const msg = errorOf(base(), present);
    expect(msg).toContain("kryonix-dr:targetPassword-pg: secret is missing: set it with 'pulumi config set --secret kryonix-dr:targetPassword-pg <value>'");
    expect(msg).toContain("kryonix-dr:drSecretKey: secret is missing");
  });

  it("duplicate service names", () => {
    const raw = base();
    raw.services!.push({ name: "pg", engine: "postgres" });
    expect(errorOf(raw)).toContain('kryonix-dr:services[2].name: duplicate service name "pg" (also services[0]); each service needs a unique name: rename or remove one');
  });

  it("reports every problem at once", () => {
    const raw = base();
    raw.services![0]!.engine = "oracle";
    raw.storage = { lockMode: "SOFT" };
    const msg = errorOf(raw);
    expect(msg).toContain("kryonix-dr:services[0].engine");
    expect(msg).toContain('kryonix-dr:storage.lockMode: unknown value "SOFT"; accepted: GOVERNANCE, COMPLIANCE');
  });

  it("a volume service without its volume, a DR stack without its primary, native replication on plain S3", () => {
    const raw = base();
    delete raw.services![1]!.volume;
    expect(errorOf(raw)).toContain("kryonix-dr:services[1].volume: service \"files\" uses the volume engine and needs the Docker volume");
    expect(errorOf({ ...base(), stack: "dr" })).toContain("kryonix-dr:primaryStack: the DR stack finds the primary through a StackReference");
    const s3 = base();
    s3.regions!.primary!.kind = "s3";
    expect(errorOf(s3)).toContain('kryonix-dr:replication.mode: "native" needs MinIO on the primary region');
  });

  it("a volume service without a placement constraint (its data lives on one node)", () => {
    const raw = base();
    delete raw.services![1]!.placement;
    expect(errorOf(raw)).toContain(
      'kryonix-dr:services[1].placement: service "files" keeps its data on a volume, which lives on one node: pin the service and its backup sidecar to it, e.g. ["node.labels.kryonix.files == true"]',
    );
  });

  it("recovery.stableNames: off for a restore aside, and only true or false", () => {
    const raw = { ...base(), stack: "recovery", recovery: { stableNames: false } } as RawConfig;
    expect(parseSpecs(raw, ALL_SECRETS).recovery!.stableNames).toBe(false);
    expect(errorOf({ ...base(), stack: "recovery", recovery: { stableNames: "no" as unknown as boolean } })).toContain('kryonix-dr:recovery.stableNames: must be true or false, got "no"');
  });

  it("a sqlite list outside a volume service, or a path that leaves the volume", () => {
    const raw = base();
    raw.services![0]!.sqlite = ["x.db"];
    raw.services![1]!.sqlite = ["/var/lib/grafana/grafana.db", "../etc/x.db"];
    const msg = errorOf(raw);
    expect(msg).toMatch(/kryonix-dr:services\[0\]\.sqlite: applies to volume services only/);
    expect(msg).toContain('kryonix-dr:services[1].sqlite: "/var/lib/grafana/grafana.db" must be a path inside the volume, relative to dataPath');
    expect(msg).toContain('kryonix-dr:services[1].sqlite: "../etc/x.db" must be a path inside the volume');
  });

  it("logicalDumpEveryDays: PostgreSQL only, whole days from 0; unset leaves the agent's default", () => {
    const raw = base();
    expect(parseSpecs(raw, ALL_SECRETS).services[0]!.logicalDumpEveryDays).toBeUndefined();
    raw.services![0]!.logicalDumpEveryDays = 0;
    expect(parseSpecs(raw, ALL_SECRETS).services[0]!.logicalDumpEveryDays).toBe(0);
    raw.services![0]!.logicalDumpEveryDays = 1.5;
    raw.services![1]!.logicalDumpEveryDays = 7;
    const msg = errorOf(raw);
    expect(msg).toContain("kryonix-dr:services[0].logicalDumpEveryDays: must be a whole number of days from 0 to 3650, got 1.5");
    expect(msg).toContain('kryonix-dr:services[1].logicalDumpEveryDays: applies to PostgreSQL services only (logical pg_dump), and "files" is volume: remove it');
  });

  it("tsdbSnapshot and maintenanceMode: volume services only, a URL, nextcloud, and no tsdbSnapshot with sqlite", () => {
    const raw = base();
    raw.services![0]!.tsdbSnapshot = "http://prometheus:9090";
    raw.services![0]!.maintenanceMode = "nextcloud";
    raw.services![1]!.tsdbSnapshot = "prometheus:9090";
    raw.services![1]!.maintenanceMode = "wordpress";
    raw.services![1]!.sqlite = ["x.db"];
    const msg = errorOf(raw);
    expect(msg).toMatch(/kryonix-dr:services\[0\]\.tsdbSnapshot: applies to volume services only/);
    expect(msg).toMatch(/kryonix-dr:services\[0\]\.maintenanceMode: applies to volume services only/);
    expect(msg).toContain('kryonix-dr:services[1].tsdbSnapshot: must be Prometheus\'s URL as the sidecar reaches it, e.g. http://prometheus:9090, got "prometheus:9090"');
    expect(msg).toContain("kryonix-dr:services[1].tsdbSnapshot: stores the TSDB snapshot alone, so it cannot go with sqlite");
    expect(msg).toContain('kryonix-dr:services[1].maintenanceMode: must be "nextcloud"');
  });

  it("keeps the seed's numbers as the defaults", () => {
    expect(DEFAULTS.rpoSeconds).toEqual({ critical: 300, important: 3600, secondary: 86400 });
    expect(DEFAULTS.rtoSeconds).toBe(900);
  });
});

describe("the catalog server's own protection (catalog.backup) and recovery.catalog", () => {
  it("protects the catalog server as critical P0 PostgreSQL by default, as a REPLICATION login on its host", () => {
    const specs = parseSpecs(base(), ALL_SECRETS);
    expect(specs.catalogService).toMatchObject({ name: "kdr-catalog", engine: "postgres", tier: "critical", priority: "P0", host: "catalog.example", port: 5432, user: "kryonix_dr_replication", passwordKey: "catalogReplicationPassword" });
    expect(specs.services.map((s) => s.name)).toEqual(["pg", "files"]);
    expect(specs.secretKeys).toContain("catalogReplicationPassword");
  });

  it("turns off with catalog.backup: false, and then needs no replication password", () => {
    const raw = base();
    raw.catalog = { host: "catalog.example", backup: false };
    const specs = parseSpecs(raw, new Set([...ALL_SECRETS].filter((k) => k !== "catalogReplicationPassword")));
    expect(specs.catalogService).toBeUndefined();
    expect(specs.secretKeys).not.toContain("catalogReplicationPassword");
  });

  it("names the missing replication password, a service that takes the catalog's name, and a bad catalog.backup", () => {
    expect(errorOf(base(), new Set([...ALL_SECRETS].filter((k) => k !== "catalogReplicationPassword")))).toContain("kryonix-dr:catalogReplicationPassword: secret is missing");
    const clash = base();
    clash.services!.push({ name: "kdr-catalog", engine: "postgres" });
    expect(errorOf(clash)).toContain(`kryonix-dr:services[2].name: "kdr-catalog" is the name the catalog server's own backups are recorded under (catalog.backup): rename the service`);
    const bad = base();
    bad.catalog = { host: "catalog.example", backup: "yes" as never };
    expect(errorOf(bad)).toContain("kryonix-dr:catalog.backup: must be false or an object");
  });

  it("takes recovery.catalog existing|rebuild|restore on the recovery stack; the last two need the admin and owner passwords", () => {
    const raw: RawConfig = { ...base(), stack: "recovery", role: "recovery", recovery: { sourceRegion: "primary", catalog: "restore" } };
    expect(parseSpecs(raw, ALL_SECRETS).recovery!.catalog).toBe("restore");
    expect(parseSpecs({ ...raw, recovery: { sourceRegion: "primary" } }, ALL_SECRETS).recovery!.catalog).toBe("existing");
    expect(errorOf({ ...raw, recovery: { catalog: "fresh" } })).toContain("kryonix-dr:recovery.catalog");
    expect(errorOf(raw, new Set([...ALL_SECRETS].filter((k) => k !== "catalogOwnerPassword")))).toContain("kryonix-dr:catalogOwnerPassword: secret is missing");
  });
});

describe("the stack entry", () => {
  it("fails with the ConfigError before declaring anything when a secret is missing", async () => {
    const { setupMocks, stackFileConfig: file, runProgram } = await import("../support/mocks.js");
    const cfg = file("prod");
    delete cfg.config.ageIdentity;
    const regs = await setupMocks({ config: cfg.config, secretKeys: (cfg.secretKeys ?? []).filter((k) => k !== "ageIdentity"), stack: "prod" });
    await expect(runProgram()).rejects.toThrow("kryonix-dr:ageIdentity: secret is missing: set it with 'pulumi config set --secret kryonix-dr:ageIdentity <value>'");
    expect(regs.filter((r) => r.custom)).toEqual([]);
  });

  it("picks the composition by kryonix-dr:role, not only by stack name", async () => {
    const { setupMocks, stackFileConfig: file, runProgram } = await import("../support/mocks.js");
    const cfg = file("recovery");
    await setupMocks({ ...cfg, stack: "rehearsal-2026-11" });
    const outputs = await runProgram();
    expect(outputs.role).toBe("recovery");
  });
});
