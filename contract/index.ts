/**
 * The contract between the Pulumi program (components) and the agent that runs inside the
 * containers it declares. Components write these names; the agent reads them. Neither side
 * imports the other: contract/ is the only thing they share (this file imports nothing;
 * schedule.ts answers schedule questions for both with croner, which both run).
 *
 * Rules:
 * - Non-secret settings travel as environment variables (AGENT_ENV).
 * - Every credential and key travels as a Swarm secret mounted as a file (SECRET_FILES);
 *   never as an environment variable or a command-line argument.
 */
import type { Tier } from "./enums.js";
import { SETTINGS } from "./settings.js";

export * from "./enums.js";
export { AGENT_ENV, SETTINGS, TOOL_ENV, agentFlags, flagName, type SettingDef, type SettingKey, type SettingKind } from "./settings.js";


/** Backup classes. Each is a key prefix with its own lifecycle rule. */
export const BACKUP_CLASSES = ["full", "incremental", "wal", "logical", "restic"] as const;
export type BackupClass = (typeof BACKUP_CLASSES)[number];


/**
 * Defaults that program and agent both apply. The stack config falls back to these, and so does
 * the agent when a setting reaches it unset (a container started by hand, a test), so a service
 * is never judged by a target the program does not know.
 */
export const TARGET_DEFAULTS = {
  /** The seed's RPO classes. */
  rpoSeconds: { critical: 5 * 60, important: 60 * 60, secondary: 24 * 60 * 60 } as Readonly<Record<Tier, number>>,
  /** The seed's P0 recovery target. */
  rtoSeconds: SETTINGS.rtoSeconds.default,
  /** A forced WAL segment switch this often when there was activity (PostgreSQL RPO = this + the upload margin). */
  walSwitchSeconds: SETTINGS.walSwitchSeconds.default,
  retention: { fullDays: SETTINGS.retentionFullDays.default, incrementalDays: SETTINGS.retentionIncrementalDays.default, walDays: SETTINGS.retentionWalDays.default },
  /** The tier a service without one gets. */
  tier: SETTINGS.tier.default as Tier,
  /** The protected service's port when none is given. */
  targetPort: { postgres: 5432, redis: 6379 } as Readonly<Record<"postgres" | "redis", number>>,
  replicationIntervalSeconds: SETTINGS.replicationIntervalSeconds.default,
} as const;

/**
 * A moment as every command and config key takes it: ISO 8601 with its zone
 * (2026-11-28T21:04:05Z, or +01:00). A time without a zone would be read in the zone of whichever
 * machine or container reads it, so a recovery point could move by hours.
 */
export function isIsoTimeWithZone(raw: string): boolean {
  return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(raw) && !Number.isNaN(Date.parse(raw));
}

/** A UUID as the catalog keeps them (backup ids, tenant ids), in either case. */
export const isUuid = (v: string): boolean => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(v);

/** The service name the catalog server's own backups are recorded under (stack config catalog.backup). */
export const CATALOG_SERVICE = "kdr-catalog";

/** The replication slot the agent streams a PostgreSQL service's WAL through. */
export const replicationSlotName = (service: string): string => ("kdr_" + service.replace(/[^a-z0-9_]/g, "_")).slice(0, 63);

/** Swarm secret file paths inside the containers. */
export const SECRET_DIR = SETTINGS.secretDir.default;
export const SECRET_FILES = {
  s3AccessKey: `${SECRET_DIR}/kdr-s3-access-key`,
  s3SecretKey: `${SECRET_DIR}/kdr-s3-secret-key`,
  catalogPassword: `${SECRET_DIR}/kdr-catalog-password`,
  targetPassword: `${SECRET_DIR}/kdr-target-password`,
  /** age recipient (public key): enough to encrypt; backup sidecars get only this. */
  encryptionRecipient: `${SECRET_DIR}/kdr-age-recipient`,
  /** age identity (private key): only restore, verify and drill containers get this. */
  encryptionIdentity: `${SECRET_DIR}/kdr-age-identity`,
  /** restic repository password (restic does its own encryption for volume backups). */
  resticPassword: `${SECRET_DIR}/kdr-restic-password`,
  /** replicate mode: credentials of the replica (DR) bucket's writer. */
  replicaAccessKey: `${SECRET_DIR}/kdr-replica-s3-access-key`,
  replicaSecretKey: `${SECRET_DIR}/kdr-replica-s3-secret-key`,
  /** notify relay only: who is told (contract/notify.ts); no other container holds it. */
  notificationTargets: `${SECRET_DIR}/kdr-notification-targets`,
} as const;

/** Default port of the agent's /healthz and /metrics endpoints. */
export const DEFAULT_METRICS_PORT = SETTINGS.metricsPort.default;

/** Labels the components put on Swarm services; policies and the drill read them. */
export const LABELS = {
  /** On a protected service: "true" when it holds state. */
  stateful: "kryonix.dr.stateful",
  /** On a protected service: its logical service name. */
  service: "kryonix.dr.service",
  /** On a backup sidecar: the logical name of the service it protects. */
  protects: "kryonix.dr.protects",
  /** On any kryonix-dr service: its role (sidecar, cron, replicator, restore). */
  role: "kryonix.dr.role",
  /** Targets, in seconds, declared on protected services. */
  rpoSeconds: "kryonix.dr.rpo-seconds",
  rtoSeconds: "kryonix.dr.rto-seconds",
  tier: "kryonix.dr.tier",
  engine: "kryonix.dr.engine",
  /** On every resource kryonix-dr declares: "true". */
  managed: "kryonix.dr.managed",
} as const;

/**
 * Object layout. Class comes first so that lifecycle rules (which filter by prefix) can give
 * each class its own expiry; the service comes second so that each sidecar's policy can be
 * limited to its own prefixes.
 */
export function objectPrefix(cls: BackupClass, service: string): string {
  return `${cls}/${service}/`;
}

/**
 * A volume service's restic repository of one generation. A repository that cannot be opened is
 * never written again: the agent starts the next generation beside it (so a policy on
 * `restic/<service>/*` covers them all, and restic's lock files are at `.../g<N>/locks/`).
 */
export function resticRepoPrefix(service: string, generation: number): string {
  return `${objectPrefix("restic", service)}g${generation}/`;
}

/** The generation of a restic repository prefix or of an object key under it, if any. */
export function resticGeneration(key: string): number | undefined {
  const m = /^restic\/[^/]+\/g([1-9][0-9]*)\//.exec(key);
  return m ? Number(m[1]) : undefined;
}

/** Beside each generation's restic files: who it belongs to and the key to open it with. */
export const RESTIC_DESCRIPTOR = "kdr-repository.json";

/** restic's lock files of every generation: the one thing a volume sidecar may delete. */
export function resticLockFiles(service: string): string {
  return `${objectPrefix("restic", service)}g*/locks/*`;
}
