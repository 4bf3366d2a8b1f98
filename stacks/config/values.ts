/**
 * The value checks parse.ts applies to raw config: each adds an issue that names the key and the
 * fix, and returns a usable fallback, so every problem of a config is reported at once.
 */
import { PROJECT } from "./schema.js";

export class Issues {
  readonly list: Array<{ key: string; message: string }> = [];
  add(key: string, message: string): void {
    this.list.push({ key, message });
  }
}

export function positive(issues: Issues, key: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    issues.add(key, `must be a positive number, got ${JSON.stringify(value)}; set it with 'pulumi config set --path ${PROJECT}:${key} <n>'`);
    return fallback;
  }
  return value;
}

/** The longest retention accepted, in days (10 years). Under a COMPLIANCE lock a typo cannot be undone. */
export const MAX_RETENTION_DAYS = 3650;

/**
 * Retention in whole days, 1..MAX_RETENTION_DAYS: it becomes lifecycle rules and object-lock
 * periods, and a locked object cannot be deleted before its period ends (COMPLIANCE: not even by
 * an admin), so 100000 days is refused rather than carried out.
 */
export function retentionDays(issues: Issues, key: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > MAX_RETENTION_DAYS) {
    const why = typeof value === "number" && value > MAX_RETENTION_DAYS ? ` (objects under a compliance lock could not be deleted for ${Math.round(value / 365)} years)` : "";
    issues.add(key, `must be a whole number of days from 1 to ${MAX_RETENTION_DAYS}, got ${JSON.stringify(value)}${why}; set it with 'pulumi config set --path ${PROJECT}:${key} <days>'`);
    return fallback;
  }
  return value;
}

/** A whole number of days, 0..MAX_RETENTION_DAYS (0 meaning "every time"). */
export function wholeDays(issues: Issues, key: string, value: unknown, fallback: number | undefined): number | undefined {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > MAX_RETENTION_DAYS) {
    issues.add(key, `must be a whole number of days from 0 to ${MAX_RETENTION_DAYS}, got ${JSON.stringify(value)}; set it with 'pulumi config set --path ${PROJECT}:${key} <days>'`);
    return fallback;
  }
  return value;
}

export function bool(issues: Issues, key: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value === "boolean") return value;
  issues.add(key, `must be true or false, got ${JSON.stringify(value)}`);
  return fallback;
}

/** A list of strings (e.g. a service's args), or the empty list when unset. */
export function stringList(issues: Issues, key: string, value: unknown): string[] {
  if (value === undefined) return [];
  if (Array.isArray(value) && value.every((x) => typeof x === "string")) return value as string[];
  issues.add(key, `must be a list of strings, e.g. ["grafana"], got ${JSON.stringify(value)}`);
  return [];
}

/** A volume's SQLite databases: paths inside it, relative, without '..'. */
export function sqliteFiles(issues: Issues, key: string, engine: string, value: unknown): string[] {
  const list = stringList(issues, key, value);
  if (list.length && engine !== "volume") issues.add(key, `applies to volume services only (the ${engine} engine has its own consistent copy): remove it`);
  for (const f of list) {
    if (f.startsWith("/") || f.split("/").includes("..") || f === "") issues.add(key, `${JSON.stringify(f)} must be a path inside the volume, relative to dataPath, e.g. grafana.db`);
  }
  return list;
}

/**
 * A volume service's consistency step besides SQLite: Prometheus's TSDB snapshot (its URL) or
 * Nextcloud's maintenance mode. Both need the volume writable in the sidecar.
 */
export function consistency(
  issues: Issues,
  key: string,
  engine: string,
  s: { tsdbSnapshot?: unknown; maintenanceMode?: unknown; sqlite?: unknown },
): { tsdbSnapshot?: string; maintenanceMode?: "nextcloud" } {
  const out: { tsdbSnapshot?: string; maintenanceMode?: "nextcloud" } = {};
  for (const k of ["tsdbSnapshot", "maintenanceMode"] as const) {
    if (s[k] !== undefined && engine !== "volume") issues.add(`${key}.${k}`, `applies to volume services only (the ${engine} engine has its own consistent copy): remove it`);
  }
  if (s.tsdbSnapshot !== undefined) {
    if (typeof s.tsdbSnapshot !== "string" || !/^https?:\/\/[^\s/]+(\/\S*)?$/.test(s.tsdbSnapshot)) {
      issues.add(`${key}.tsdbSnapshot`, `must be Prometheus's URL as the sidecar reaches it, e.g. http://prometheus:9090, got ${JSON.stringify(s.tsdbSnapshot)}`);
    } else out.tsdbSnapshot = s.tsdbSnapshot;
    if (Array.isArray(s.sqlite) && s.sqlite.length) issues.add(`${key}.tsdbSnapshot`, "stores the TSDB snapshot alone, so it cannot go with sqlite: give one or the other");
  }
  if (s.maintenanceMode !== undefined) {
    if (s.maintenanceMode !== "nextcloud") issues.add(`${key}.maintenanceMode`, `must be "nextcloud" (the one service whose maintenance mode the agent switches), got ${JSON.stringify(s.maintenanceMode)}`);
    else out.maintenanceMode = "nextcloud";
  }
  return out;
}

// A stack's name prefix: with a 31-character service name and '-backup', at most 60 of Swarm's 63.
export const PREFIX_RE = /^[a-z](?:[a-z0-9-]{0,19}[a-z0-9])?$/;

/** recovery.serviceNamePrefix: the restored services' names start with it, as namePrefix. */
export function servicePrefix(issues: Issues, value: unknown, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== "string" || !PREFIX_RE.test(value)) {
    issues.add("recovery.serviceNamePrefix", `must be lowercase letters, digits and '-', at most 21 characters, starting with a letter and not ending in '-' (the restored services are named <prefix>-<service>), got ${JSON.stringify(value)}`);
    return fallback;
  }
  return value;
}
