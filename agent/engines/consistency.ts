/**
 * Application consistency around a volume copy, for the two services whose data cannot be read
 * as it is written, each with the service's own mechanism:
 * - Prometheus: a TSDB snapshot through its admin API (`KDR_TSDB_SNAPSHOT_URL`); the run stores
 *   the snapshot alone, which is a complete TSDB directory, and removes it from the volume after
 *   the upload (Prometheus has no API to delete one, and a kept snapshot pins every block it
 *   hard-links, so the volume would only grow).
 * - Nextcloud: maintenance mode (`KDR_MAINTENANCE_MODE=nextcloud`), the `'maintenance' => true`
 *   that `occ maintenance:mode --on` writes into config/config.php, on around the copy and off
 *   after it, also when the copy failed, and at the next run when a killed run left it on.
 * Both write to the volume, so the sidecar mounts it read-write for these services only.
 */
import { chownSync, existsSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AGENT_ENV } from "../../contract/index.js";
import { ConfigError, type Settings } from "../config.js";
import { log } from "../storage/progress.js";

/** Prometheus names its snapshots `<UTC time>-<random hex>`. */
const SNAPSHOT_NAME = /^[0-9A-Za-z._-]+$/;

function readOnlyError(e: unknown, what: string): Error {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === "EROFS" || code === "EACCES" || code === "EPERM") {
    return new Error(`${what}: ${(e as Error).message}: the sidecar must mount the volume read-write for this (the program does so for services with tsdbSnapshot or maintenanceMode; a hand-made sidecar needs the same).`);
  }
  return e as Error;
}

/** The snapshot a run made and did not get to remove (killed): recorded beside the agent's state. */
const pendingFile = (s: Settings) => join(s.stateDir, "tsdb-snapshot-pending");

export function removeTsdbSnapshot(s: Settings, volume: string, name: string): void {
  const dir = join(volume, "snapshots", name);
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch (e) {
    throw readOnlyError(e, `could not remove Prometheus snapshot ${dir}`);
  }
  rmSync(pendingFile(s), { force: true });
  log(`tsdb: snapshot ${name} removed from the volume`);
}

/**
 * Asks Prometheus for a snapshot (`POST <url>/api/v1/admin/tsdb/snapshot`, which needs
 * --web.enable-admin-api) and returns its directory in the volume. A snapshot a killed run left
 * behind is removed first.
 */
export async function takeTsdbSnapshot(s: Settings, volume: string): Promise<{ name: string; dir: string }> {
  if (existsSync(pendingFile(s))) {
    const left = readFileSync(pendingFile(s), "utf8").trim();
    if (SNAPSHOT_NAME.test(left)) {
      log(`tsdb: removing snapshot ${left}, left by a run that did not finish`);
      removeTsdbSnapshot(s, volume, left);
    }
  }
  const url = `${s.require("tsdbSnapshotUrl").replace(/\/+$/, "")}/api/v1/admin/tsdb/snapshot`;
  log(`tsdb: POST ${url}`);
  let res: Response;
  try {
    res = await fetch(url, { method: "POST", signal: AbortSignal.timeout(600_000) });
  } catch (e) {
    const cause = (e as Error).cause instanceof Error ? ((e as Error).cause as Error).message : (e as Error).message;
    throw new Error(`${AGENT_ENV.tsdbSnapshotUrl}: POST ${url} failed: ${cause}; is Prometheus on a network the sidecar is attached to?`);
  }
  const body = (await res.text()).trim();
  if (!res.ok) {
    const hint = res.status === 404 || res.status === 405 || /admin APIs disabled/i.test(body) ? " (start Prometheus with --web.enable-admin-api)" : "";
    throw new Error(`${AGENT_ENV.tsdbSnapshotUrl}: POST ${url} answered HTTP ${res.status}${body ? `: ${body.slice(0, 300)}` : ""}${hint}`);
  }
  let name: unknown;
  try {
    name = (JSON.parse(body) as { data?: { name?: unknown } }).data?.name;
  } catch {
    /* checked below */
  }
  if (typeof name !== "string" || !SNAPSHOT_NAME.test(name)) throw new Error(`${AGENT_ENV.tsdbSnapshotUrl}: POST ${url} did not name a snapshot: ${body.slice(0, 300)}`);
  writeFileSync(pendingFile(s), name);
  const dir = join(volume, "snapshots", name);
  if (!existsSync(dir)) {
    throw new ConfigError(`Prometheus made snapshot ${name}, but ${dir} does not exist: ${AGENT_ENV.volumePath} must be Prometheus's data volume (its --storage.tsdb.path).`);
  }
  log(`tsdb: snapshot ${name}`);
  return { name, dir };
}

const ON = /('maintenance'\s*=>\s*)true/;
const OFF = /('maintenance'\s*=>\s*)false/;
/** Put beside the switch when the agent turns it on: whose it is, so a later run can undo a killed run's. */
const MARK = "// kdr-agent: maintenance on for a backup";

function nextcloudConfig(volume: string): string {
  const file = join(volume, "config", "config.php");
  if (!existsSync(file)) throw new ConfigError(`${AGENT_ENV.maintenanceMode}=nextcloud: ${file} does not exist: ${AGENT_ENV.volumePath} must be Nextcloud's /var/www/html volume.`);
  return file;
}

/** Replaces config.php in one rename, keeping its owner and mode (Nextcloud runs as www-data). */
function rewrite(file: string, text: string): void {
  const st = statSync(file);
  const tmp = `${file}.kdr-tmp`;
  try {
    writeFileSync(tmp, text, { mode: st.mode & 0o7777 });
    chownSync(tmp, st.uid, st.gid);
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw readOnlyError(e, `could not write ${file}`);
  }
}

/**
 * Turns Nextcloud's maintenance mode on. Returns whether this run owns it: a maintenance mode
 * someone else set is left as it is (and left on after the copy); one a killed run of ours left
 * is taken over and turned off after this copy.
 */
export function enterMaintenance(volume: string): boolean {
  const file = nextcloudConfig(volume);
  const text = readFileSync(file, "utf8");
  if (ON.test(text)) {
    if (text.includes(MARK)) {
      log("nextcloud: maintenance mode was left on by a run that did not finish; this run turns it off after its copy");
      return true;
    }
    log("nextcloud: already in maintenance mode (not set by a backup): copying, and leaving it on");
    return false;
  }
  const next = OFF.test(text)
    ? text.replace(OFF, `${MARK}\n  $1true`)
    : text.replace(/(\$CONFIG\s*=\s*(?:array\s*\(|\[))/, `$1\n  ${MARK}\n  'maintenance' => true,`);
  if (next === text) throw new Error(`${file} has no $CONFIG array to switch maintenance mode in: is it Nextcloud's config.php?`);
  rewrite(file, next);
  log("nextcloud: maintenance mode on");
  return true;
}

/** Turns maintenance mode off again, when this run owns it. */
export function leaveMaintenance(volume: string, owned: boolean): void {
  if (!owned) return;
  const file = nextcloudConfig(volume);
  const text = readFileSync(file, "utf8");
  rewrite(file, text.replace(new RegExp(`${MARK.replace(/[/]/g, "\\/")}\\n\\s*`), "").replace(ON, "$1false"));
  log("nextcloud: maintenance mode off");
}

/**
 * Turns off a maintenance mode a backup of ours turned on, where it is still on: at the
 * sidecar's start (a killed run), and in a restored tree (the copy was taken with it on).
 */
export function recoverMaintenance(volume: string, why: string): void {
  const file = join(volume, "config", "config.php");
  if (!existsSync(file)) return;
  const text = readFileSync(file, "utf8");
  if (!ON.test(text) || !text.includes(MARK)) return;
  log(`nextcloud: maintenance mode ${why}; turning it off`);
  leaveMaintenance(volume, true);
}
