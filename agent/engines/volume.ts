/**
 * Volumes and configuration: restic (content-defined dedup, its own encryption with the
 * repository password from a Swarm secret) straight to S3, at s3:<endpoint>/<bucket>/restic/<service>.
 * Only changed chunks are uploaded, so an incremental run is simply the next snapshot; its size
 * is restic's own measurement (data_added), never an estimate.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import path from "node:path";
import { ConfigError, type Settings } from "../config.js";
import { spawnTool } from "../storage/pipeline.js";
import { log } from "../storage/progress.js";
import { toolVersion } from "./tools.js";
import type { BackupContext, EngineResult } from "./types.js";
import { objectPrefix } from "../../contract.js";

export function resticEnv(s: Settings): NodeJS.ProcessEnv {
  const endpoint = s.require("s3Endpoint").replace(/\/+$/, "");
  return {
    ...process.env,
    RESTIC_REPOSITORY: `s3:${endpoint}/${s.require("s3Bucket")}/${objectPrefix("restic", s.service).replace(/\/$/, "")}`,
    RESTIC_PASSWORD_FILE: s.secretPath("resticPassword"),
    AWS_ACCESS_KEY_ID: s.secret("s3AccessKey"),
    AWS_SECRET_ACCESS_KEY: s.secret("s3SecretKey"),
    AWS_DEFAULT_REGION: s.get("s3Region") ?? "us-east-1",
    RESTIC_CACHE_DIR: path.join(s.stateDir, "restic-cache"),
  };
}

/** Runs restic; a wrong password becomes an error that says which secret to fix. */
async function restic(s: Settings, args: string[], onLine?: (l: string) => void): Promise<string> {
  s.secret("resticPassword"); // a missing password file gets the standard, clear message
  const r = spawnTool("restic", args, { env: resticEnv(s), stdin: "ignore" });
  let out = "";
  let buf = "";
  r.child.stdout!.on("data", (d: Buffer) => {
    out += d;
    if (!onLine) return;
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  try {
    await r.exited;
  } catch (e) {
    const msg = (e as Error).message;
    if (/wrong password|no key found/i.test(msg)) {
      throw new ConfigError(`restic cannot open the repository with the password in ${s.secretPath("resticPassword")}: put the repository's password into the kdr-restic-password secret.`);
    }
    throw e;
  }
  return out;
}

export async function ensureRepo(s: Settings): Promise<string> {
  try {
    const cfg = JSON.parse(await restic(s, ["cat", "config", "--json"])) as { id: string };
    return cfg.id;
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    if (!/Is there a repository at the following location|unable to open config file|does not exist/i.test((e as Error).message)) throw e;
    log(`restic: initialising repository for ${s.service}`);
    await restic(s, ["init"]);
    const cfg = JSON.parse(await restic(s, ["cat", "config", "--json"])) as { id: string };
    return cfg.id;
  }
}

function runHook(s: Settings, which: "hookPre" | "hookPost"): void {
  const cmd = s.get(which);
  if (!cmd) return;
  log(`hook ${which === "hookPre" ? "pre" : "post"}: ${cmd}`);
  const r = spawnSync("/bin/sh", ["-c", cmd], { stdio: ["ignore", "inherit", "inherit"], timeout: 600_000 });
  if (r.status !== 0) throw new Error(`${which === "hookPre" ? "KDR_HOOK_PRE" : "KDR_HOOK_POST"} command failed (exit ${r.status}): ${cmd}`);
}

interface ResticSummary {
  message_type: "summary";
  data_added: number;
  total_bytes_processed: number;
  total_files_processed: number;
  files_new: number;
  files_changed: number;
  snapshot_id: string;
}

/**
 * Why an empty volume is not backed up, or undefined when it has content. restic refuses to save
 * an empty tree ("snapshot is empty"), and there is nothing to lose: the run is skipped, not failed.
 */
export function emptyVolumeReason(s: Settings): string | undefined {
  const volume = s.require("volumePath");
  if (!existsSync(volume)) throw new ConfigError(`KDR_VOLUME_PATH=${volume} does not exist: mount the protected volume there (read-only is enough).`);
  return readdirSync(volume).length === 0 ? `${volume} is empty: nothing to back up (restic cannot snapshot an empty tree); no backup was recorded` : undefined;
}

export async function backup(ctx: BackupContext, type: "full" | "incremental"): Promise<EngineResult & { repoId: string }> {
  const s = ctx.settings;
  const volume = s.require("volumePath");
  if (!existsSync(volume)) throw new ConfigError(`KDR_VOLUME_PATH=${volume} does not exist: mount the protected volume there (read-only is enough).`);
  const repoId = await ensureRepo(s);
  const at = new Date();
  runHook(s, "hookPre");
  let summary: ResticSummary | undefined;
  let walkedAt = at;
  try {
    let lastPrint = 0;
    // --force on a full re-reads every file instead of trusting the parent snapshot's metadata.
    const args = ["backup", "--json", "--host", s.service, "--tag", "kdr", "--tag", ctx.backupId, ...(type === "full" ? ["--force"] : []), "."];
    const r = spawnTool("restic", args, { env: resticEnv(s), stdin: "ignore", cwd: volume });
    let buf = "";
    r.child.stdout!.on("data", (d: Buffer) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          const m = JSON.parse(line) as { message_type: string; percent_done?: number; bytes_done?: number; total_bytes?: number; seconds_remaining?: number };
          if (m.message_type === "summary") summary = m as unknown as ResticSummary;
          else if (m.message_type === "status" && Date.now() - lastPrint > 2000) {
            lastPrint = Date.now();
            log(`restic ${s.service}: ${((m.percent_done ?? 0) * 100).toFixed(0)}% of ${m.total_bytes ?? "?"} bytes${m.seconds_remaining ? `, ETA ${m.seconds_remaining} s` : ""}`);
          }
        } catch {
          /* restic prints a few non-JSON lines; they are not progress */
        }
      }
    });
    await r.exited;
    walkedAt = new Date();
  } finally {
    runHook(s, "hookPost");
  }
  if (!summary) throw new Error("restic backup finished without a JSON summary: the tool's output format changed; check the restic version.");
  // restic 0.14's summary gives the short id; the full id is the SHA-256 of the snapshot object.
  const snaps = JSON.parse(await restic(s, ["snapshots", "--json", "--tag", ctx.backupId])) as { id: string; short_id: string }[];
  const full = snaps.find((x) => x.id.startsWith(summary!.snapshot_id));
  if (!full) throw new Error(`restic snapshot ${summary.snapshot_id} of this run is not listed by 'restic snapshots': the repository changed under us.`);
  summary.snapshot_id = full.id;
  return {
    repoId,
    artifacts: [
      {
        bucket: ctx.storage.bucket,
        key: `${objectPrefix("restic", s.service)}snapshots/${summary.snapshot_id}`,
        name: "restic-snapshot",
        rawBytes: summary.total_bytes_processed,
        rawSha256: summary.snapshot_id,
        storedBytes: summary.data_added,
        // A restic snapshot id is the SHA-256 of the snapshot object; restic checks it on read.
        sha256: summary.snapshot_id,
      },
    ],
    tool: "restic",
    toolVersion: toolVersion("restic", ["version"]),
    // restic reads the files one after another: a file changed during the walk may be in the
    // snapshot or not, so the point is the walk's span (start: all before it is in; end: nothing
    // after it is).
    recoveryPointStart: at,
    recoveryPointEnd: walkedAt,
    measured: { rawBytes: summary.total_bytes_processed, storedBytes: summary.data_added },
    details: {
      snapshotId: summary.snapshot_id,
      dataAdded: summary.data_added,
      totalBytesProcessed: summary.total_bytes_processed,
      filesNew: summary.files_new,
      filesChanged: summary.files_changed,
      meaning: type === "incremental" ? "restic snapshot; only new chunks uploaded (data_added)" : "restic snapshot with --force (every file re-read); dedup still applies",
      ratioMeaning: "stored/raw = data_added / total_bytes_processed (dedup; restic 0.14 does not compress)",
    },
  };
}

export async function restore(s: Settings, snapshotId: string, target: string, overwrite: boolean): Promise<void> {
  mkdirSync(target, { recursive: true });
  if (readdirSync(target).length > 0 && !overwrite) {
    throw new Error(`restore target ${target} is not empty: give an empty directory, or --force-overwrite-source --yes to restore over it.`);
  }
  // restic verifies every blob's MAC and hash as it restores; a damaged pack fails the restore.
  // --no-lock: restore credentials are read-only (a restore must not be able to change the
  // repository), and a lock is an object write; reading a snapshot needs no lock.
  await restic(s, ["--no-lock", "restore", snapshotId, "--target", target, "--verify"]);
  log(`volume restore: snapshot ${snapshotId.slice(0, 8)} restored into ${target}`);
}

export async function verify(s: Settings, snapshotId: string): Promise<string[]> {
  await restic(s, ["cat", "snapshot", snapshotId]);
  const out = await restic(s, ["check", "--read-data"]);
  return [`restic check --read-data: ${out.trim().split("\n").slice(-1)[0]}`];
}

export async function forget(s: Settings, snapshotIds: string[]): Promise<void> {
  if (snapshotIds.length === 0) return;
  await restic(s, ["forget", "--prune", ...snapshotIds]);
}
