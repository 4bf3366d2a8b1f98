/**
 * The two stacks a drill deploys, as the drill configures them: the local stack with the drill's
 * full-backup cadence, and the recovery stack pointed at the local deployment's backups.
 */
import { parseServiceSpecs, type RawService, type ServiceSpec } from "../../stacks/config.js";
import { DEPLOYMENTS_DIR } from "../deployer.js";
import { generatedSecrets, localStackConfig } from "../local-stack.js";
import type { Platform } from "../platform.js";
import { loadStackConfig, type RunOptions } from "../program.js";

export type Config = NonNullable<RunOptions["config"]>;

export const LOCAL_STACK = "local";
export const RECOVERY_STACK = "recovery";
/**
 * Drill schedules: a full backup every minute, so that a few minutes of writes see several
 * fulls, the incrementals and continuous WAL. The stack's own cadence (every 5 minutes) would make
 * a drill wait up to 5 minutes for its first full.
 */
export const DRILL_FULL_SCHEDULE = "0 * * * * *";

/** The local stack's services as its YAML declares them, with the drill's full-backup cadence. */
function drillRawServices(projectDir: string): RawService[] {
  const { config } = loadStackConfig(projectDir, LOCAL_STACK);
  const raw = config["kryonix-dr:services"];
  if (!raw) throw new Error(`Pulumi.${LOCAL_STACK}.yaml declares no kryonix-dr:services: the drill needs the protected services.`);
  return (JSON.parse(raw) as RawService[]).map((s) => ({ ...s, schedules: { ...s.schedules, full: DRILL_FULL_SCHEDULE } }));
}

/**
 * The services the drill deploys, parsed by the stacks' own parser: the same specs (engine, data
 * path, targets) the local stack's components receive.
 */
export function drillServices(projectDir: string): ServiceSpec[] {
  const { config } = loadStackConfig(projectDir, LOCAL_STACK);
  return parseServiceSpecs({ stack: LOCAL_STACK, namePrefix: localNamePrefix(projectDir), services: drillRawServices(projectDir), defaults: jsonValue(config["kryonix-dr:defaults"]) }, "local");
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

/** Config of the local stack as the drill deploys it (platform facts, generated secrets, drill schedules). */
export function drillLocalConfig(platform: Platform, projectDir: string, stateDir = DEPLOYMENTS_DIR, opts: { catalogFullSchedule?: string } = {}): Config {
  const config: Config = { ...localStackConfig(platform, LOCAL_STACK, stateDir, projectDir), services: { value: drillRawServices(projectDir) } };
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
 * region loss), and the recovery point.
 */
export function drillRecoveryConfig(
  platform: Platform,
  projectDir: string,
  point: Date | "latest",
  stateDir = DEPLOYMENTS_DIR,
  sourceRegion: "primary" | "dr" = "primary",
  catalog: "existing" | "rebuild" | "restore" = "existing",
): Config {
  const local = localStackConfig(platform, LOCAL_STACK, stateDir, projectDir);
  const secrets = generatedSecrets(LOCAL_STACK, stateDir);
  const regions = local.regions!.value as Record<"primary" | "dr", unknown>;
  const config: Config = {
    regions: { value: { [sourceRegion]: regions[sourceRegion] } },
    catalog: local.catalog!,
    images: local.images!,
    services: { value: drillRawServices(projectDir) },
    recovery: { value: { point: point === "latest" ? "latest" : point.toISOString(), sourceRegion, serviceNamePrefix: localNamePrefix(projectDir), catalog } },
    [`${sourceRegion}AccessKey`]: local[`${sourceRegion}AccessKey`]!,
    [`${sourceRegion}SecretKey`]: local[`${sourceRegion}SecretKey`]!,
  };
  for (const k of ["catalogWriterPassword", "ageRecipient", "ageIdentity", "resticPassword", "targetPassword-postgresql"]) {
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
