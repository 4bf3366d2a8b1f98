/**
 * The two stacks a drill deploys, as the drill configures them: the local stack with the drill's
 * full-backup cadence, and the recovery stack pointed at the local deployment's backups.
 */
import { parseServiceSpecs, type RawService, type ServiceSpec } from "../../stacks/config.js";
import { DEPLOYMENTS_DIR, readState } from "../deployer.js";
import { generatedSecrets, localStackConfig } from "../local-stack.js";
import { readPlatform, type Platform } from "../platform.js";
import { loadStackConfig, type RunOptions } from "../program.js";

export type Config = NonNullable<RunOptions["config"]>;

export const LOCAL_STACK = "local";
export const RECOVERY_STACK = "recovery";
/**
 * Drill schedules: a full backup every minute, so that a few minutes of writes see several
 * fulls, the incrementals and continuous WAL. The stack's own cadence (every 5 minutes) would make
 * a drill wait up to 5 minutes for its first full.
 *
 * Not with seed data (`--data-size`): a full of 1 GiB every minute, each held its whole retention
 * (30 lifecycle days, 300 s here) in both regions, ran the S3 regions' store (then in memory) out
 * of memory (docs/benchmarks.md, 2026-12-06), and so did the local stack's every 5 minutes (the
 * drill then held three of PostgreSQL's fulls where it needs one): copies the drill never uses.
 * A seeded drill backs up in full at the seed's cadence (SEEDED_DRILL_FULL_SCHEDULE) and takes
 * one full of each service itself once the seed is in (phases.ts fullAfterSeeding), as an
 * operator does after a bulk load.
 */
export const DRILL_FULL_SCHEDULE = "0 * * * * *";
/** A seeded drill's scheduled fulls: the seed's own cadence (PARTE-22: daily at 02:00). */
export const SEEDED_DRILL_FULL_SCHEDULE = "0 0 2 * * *";

/** Lifecycle days (10 s each here) a region drill keeps incrementals: its span, with room. */
export const REGION_DRILL_RETENTION_DAYS = 30;

/**
 * Which stack's services a drill protects: the local stack's three (the default), or the prod
 * stack's own list (`--stack prod`: Pulumi.prod.yaml's services, engines, tiers, schedules, hooks,
 * placement and targets) deployed on the local platform.
 */
export type DrillSource = "local" | "prod";

/** The prod services that have no Debian package here run as these stand-ins (images/standins). */
export const STANDIN_KINDS = ["grafana", "nextcloud", "traefik", "keycloak", "minio"] as const;

/**
 * What the local platform cannot give a prod service as prod declares it, and only that:
 * - the image: PostgreSQL 15 (TimescaleDB too: the extension is not packaged here), Redis 7,
 *   Prometheus from Debian's package, the stand-ins for the rest;
 * - `host` and `volume`: the local stack declares the services itself, under its own names;
 * - retention shorter than 30 "days" for incrementals and WAL: a lifecycle day lasts 10 s here,
 *   so prod's 7 days (70 s) would expire a drill's WAL before its restore;
 * - the full-backup cadence: the drill's (every minute) instead of 02:00 daily, unless `ownFulls`
 *   (a seeded drill, see DRILL_FULL_SCHEDULE).
 * Everything else (engine, tier, incremental schedule, hooks, placement, targets, user) is prod's.
 */
export function prodServicesOnLocal(prod: RawService[], images: Platform["images"], ownFulls = false): RawService[] {
  if (!images.standins) throw new Error("the platform publishes no stand-in image (platform.json images.standins): an older platform-up wrote it. Run 'bash scripts/platform-up.sh' again.");
  return prod.map((s) => {
    const standin = (STANDIN_KINDS as readonly string[]).includes(s.name) ? s.name : "files";
    const image = s.engine === "postgres" ? images.postgres : s.engine === "redis" ? images.redis : s.name === "prometheus" ? images.prometheus : images.standins;
    const { host: _host, volume: _volume, ...rest } = s;
    return {
      ...rest,
      image,
      ...(s.engine === "volume" && s.name !== "prometheus" ? { args: [standin, ...(s.dataPath ? [s.dataPath] : [])] } : {}),
      ...(ownFulls ? {} : { schedules: { ...s.schedules, full: DRILL_FULL_SCHEDULE } }),
      retention: { ...s.retention, incrementalDays: Math.max(s.retention?.incrementalDays ?? 0, 30), walDays: Math.max(s.retention?.walDays ?? 0, 30) },
    };
  });
}

/**
 * The services as the source stack's YAML declares them, with the drill's full-backup cadence
 * (`seeded`: the seed's, or the prod stack's own; see DRILL_FULL_SCHEDULE).
 */
function drillRawServices(projectDir: string, source: DrillSource = "local", images?: Platform["images"], seeded = false): RawService[] {
  const stack = source === "prod" ? "prod" : LOCAL_STACK;
  const { config } = loadStackConfig(projectDir, stack);
  const raw = config["kryonix-dr:services"];
  if (!raw) throw new Error(`Pulumi.${stack}.yaml declares no kryonix-dr:services: the drill needs the protected services.`);
  const services = JSON.parse(raw) as RawService[];
  if (source === "prod") return prodServicesOnLocal(services, images ?? readPlatform().images, seeded);
  return services.map((s) => ({ ...s, schedules: { ...s.schedules, full: seeded ? SEEDED_DRILL_FULL_SCHEDULE : DRILL_FULL_SCHEDULE } }));
}

/** targetPassword-<service> of each PostgreSQL and Redis the drill deploys (generated per deployment). */
export function targetPasswordKeys(services: RawService[]): string[] {
  return services.filter((s) => s.engine === "postgres" || s.engine === "redis").map((s) => `targetPassword-${s.name}`);
}

/**
 * The services the drill deploys, parsed by the stacks' own parser: the same specs (engine, data
 * path, targets) the local stack's components receive.
 */
export function drillServices(projectDir: string, source: DrillSource = "local", images?: Platform["images"]): ServiceSpec[] {
  const { config } = loadStackConfig(projectDir, source === "prod" ? "prod" : LOCAL_STACK);
  const services = drillRawServices(projectDir, source, images);
  const present = new Set(source === "prod" ? targetPasswordKeys(services) : []);
  return parseServiceSpecs({ stack: LOCAL_STACK, namePrefix: localNamePrefix(projectDir), services, defaults: jsonValue(config["kryonix-dr:defaults"]) }, "local", present);
}

function jsonValue<T>(v: string | undefined): T | undefined {
  return v === undefined ? undefined : (JSON.parse(v) as T);
}

/** The tenant the local stack writes its catalog rows under. */
export function localTenantId(projectDir: string): string {
  const id = loadStackConfig(projectDir, LOCAL_STACK).config["kryonix-dr:tenantId"];
  if (!id) throw new Error(`Pulumi.${LOCAL_STACK}.yaml declares no kryonix-dr:tenantId: the drill reads the catalog rows of that tenant.`);
  return id;
}

/**
 * Config of the local stack as the drill deploys it (platform facts, generated secrets, drill
 * schedules). `source` prod: the prod stack's services, its sidecar limits and its monitoring
 * thresholds, on the local stack's platform settings (regions, replicator, catalog, storage).
 */
export function drillLocalConfig(platform: Platform, projectDir: string, stateDir = DEPLOYMENTS_DIR, opts: { catalogFullSchedule?: string; source?: DrillSource; region?: boolean; seeded?: boolean } = {}): Config {
  const raw = drillRawServices(projectDir, opts.source, platform.images, opts.seeded);
  // A region drill (its loss, the copy and the catalog's rebuild in the DR region) lasts longer
  // than 7 lifecycle "days" (70 s): the newest incremental's objects expired in the DR region
  // before the rebuild read them, and the restore fell back to an older one (2026-12-06). Kept 30
  // (300 s) there; the other drills keep the stack's own, so that a run holds no more of the
  // whole Redis RDBs (710 MB each at `--data-size 1024`, one every 30 s) than it needs.
  const services = opts.region ? raw.map((s) => ({ ...s, retention: { ...s.retention, incrementalDays: Math.max(s.retention?.incrementalDays ?? 0, REGION_DRILL_RETENTION_DAYS) } })) : raw;
  const config: Config = {
    ...localStackConfig(platform, LOCAL_STACK, stateDir, projectDir, opts.source === "prod" ? targetPasswordKeys(services) : []),
    services: { value: services },
  };
  if (opts.source === "prod") {
    const prod = loadStackConfig(projectDir, "prod").config;
    const sidecar = jsonValue<Record<string, unknown>>(prod["kryonix-dr:sidecar"]);
    // Prod's sidecar limits; its networks are the KRYONIX platform's, which this machine lacks.
    if (sidecar) config.sidecar = { value: { ...sidecar, networks: [] } };
    const monitoring = jsonValue<Record<string, unknown>>(prod["kryonix-dr:monitoring"]);
    const localMonitoring = jsonValue<Record<string, unknown>>(loadStackConfig(projectDir, LOCAL_STACK).config["kryonix-dr:monitoring"]);
    // Prod's thresholds. No Prometheus of the program's own: prod has none (the platform's scrapes
    // the exported config), and the prod services include a Prometheus under that name.
    if (monitoring) config.monitoring = { value: { ...localMonitoring, ...monitoring, prometheus: undefined } };
  }
  if (opts.catalogFullSchedule) {
    // The region drill restores the catalog from its own backups: it needs one within the drill.
    const catalog = config.catalog!.value as { backup?: { schedules?: Record<string, string> } };
    if (!catalog.backup) throw new Error(`Pulumi.${LOCAL_STACK}.yaml sets no kryonix-dr:catalog.backup: the region drill restores the catalog from the catalog server's backups.`);
    catalog.backup = { ...catalog.backup, schedules: { ...catalog.backup.schedules, full: opts.catalogFullSchedule } };
  }
  return config;
}

/**
 * Config of the recovery stack: same platform facts and the local deployment's secrets (the
 * restore must decrypt what the sidecars encrypted), its source region (the DR region after a
 * region loss), and the recovery point. Its services are those the local stack was deployed with
 * (its recorded config): the local stack's own, or the prod stack's after `drill --stack prod`.
 */
/** The local stack's services as a recovery of it sees them: as deployed, else as its stack file declares them. */
export function localStackServices(projectDir: string, stateDir = DEPLOYMENTS_DIR): RawService[] {
  const deployed = readState(LOCAL_STACK, stateDir)?.config;
  return Array.isArray(deployed?.services?.value) ? (deployed.services.value as RawService[]) : drillRawServices(projectDir);
}

export function drillRecoveryConfig(
  platform: Platform,
  projectDir: string,
  point: Date | "latest",
  stateDir = DEPLOYMENTS_DIR,
  sourceRegion: "primary" | "dr" = "primary",
  catalog: "existing" | "rebuild" | "restore" = "existing",
): Config {
  const deployed = readState(LOCAL_STACK, stateDir)?.config;
  const services = localStackServices(projectDir, stateDir);
  // The services' passwords the local deployment had (a local Redis has none).
  // (every PostgreSQL has one; a Redis only when its deployment gave it one).
  const passwords = [
    ...new Set([
      ...services.filter((s) => s.engine === "postgres").map((s) => `targetPassword-${s.name}`),
      ...(deployed ? Object.keys(deployed).filter((k) => k.startsWith("targetPassword-")) : []),
    ]),
  ];
  const local = localStackConfig(platform, LOCAL_STACK, stateDir, projectDir, passwords);
  const secrets = generatedSecrets(LOCAL_STACK, stateDir, passwords);
  const regions = local.regions!.value as Record<"primary" | "dr", unknown>;
  const config: Config = {
    regions: { value: { [sourceRegion]: regions[sourceRegion] } },
    catalog: local.catalog!,
    images: local.images!,
    services: { value: services },
    recovery: { value: { point: point === "latest" ? "latest" : point.toISOString(), sourceRegion, serviceNamePrefix: localNamePrefix(projectDir), catalog } },
    [`${sourceRegion}AccessKey`]: local[`${sourceRegion}AccessKey`]!,
    [`${sourceRegion}SecretKey`]: local[`${sourceRegion}SecretKey`]!,
  };
  for (const k of ["catalogWriterPassword", "ageRecipient", "ageIdentity", "resticPassword", ...passwords]) {
    config[k] = { value: secrets[k], secret: true };
  }
  // Getting the catalog back creates its database (admin) and migrates it (owner).
  if (catalog !== "existing") {
    config.catalogAdminPassword = local.catalogAdminPassword!;
    config.catalogOwnerPassword = { value: secrets.catalogOwnerPassword, secret: true };
  }
  return config;
}

export function localNamePrefix(projectDir: string): string {
  return loadStackConfig(projectDir, LOCAL_STACK).config["kryonix-dr:namePrefix"] ?? "kdr-local";
}
