/**
 * kdr-agent: the runtime inside backup sidecars and cron containers.
 * Bundled by esbuild into one CommonJS file; never imports @pulumi.
 *
 * Exit codes: 0 ok; 1 the work failed (backup failed, verify failed, health stale);
 * 2 bad usage or configuration (the message names the setting and the fix).
 */
import { probe } from "./healthz.js";
import type pg from "pg";
import { closeCatalog, connectCatalog, listBackups } from "./catalog.js";
import { AGENT_ENV, isIsoTimeWithZone, isUuid, SETTINGS, type SettingDef, type SettingKey } from "../contract/index.js";
import { ConfigError, flagName, parseArgs, Settings } from "./config.js";
import { LockBusyError } from "./lock.js";
import { AGENT_VERSION } from "./commands/shared.js";
import { failInflight, printSummary, runBackup } from "./commands/backup.js";
import { runHealth } from "./commands/health.js";
import { runPrune } from "./commands/prune.js";
import { runRebuild } from "./commands/rebuild.js";
import { checkRestorePaths, runRestore } from "./commands/restore.js";
import { runPendingVerify, runVerify } from "./commands/verify.js";
import { follow, runActivate, runSeed } from "./commands/standby.js";
import { runSwitchover } from "./commands/switchover.js";
import { cron, serve } from "./serve.js";
import { replicate } from "./replicate.js";
import { notifyRelay } from "./notify.js";
import { fmtBytes, fmtSeconds, log } from "./storage/progress.js";
import { migrate } from "../catalog/migrate.js";

export { AGENT_VERSION };

const USAGE = `usage: kdr-agent <command> [options]

commands:
  backup --type full|incremental [--wait <s>] [--logical | --no-logical]   one backup run, recorded in the catalog
                                   (PostgreSQL full: logical dumps when due, see ${AGENT_ENV.pgLogicalEveryDays}; the flags take them now, or leave them out)
  restore --target <dir> [--time <ISO> | --backup-id <id>] [--wal-dir <dir>] [--owner uid:gid] [--clean-target] [--force-overwrite-source --yes]
  verify [--backup-id <id>]        re-read artifacts: SHA-256 + the tool's own check; recorded in the catalog
  verify --pending [--limit <n>]   verify the backups completed since the last run (newest first, at most n, default 5)
  list [--limit <n>]               backups of the service (or all services with --all)
  prune                            expire backups past retention (never the last good full or the WAL it needs)
  health                           freshness of the newest verified recovery point vs the RPO (exit 1 when stale)
  serve                            backup sidecar: schedules, WAL streaming, /healthz and /metrics
  cron                             run the jobs in ${AGENT_ENV.cronJobs} on their schedules
  replicate [--once]               copy new object versions (with their retention) to the replica bucket
  notify-relay                     tell people: Alertmanager's webhook and agents' events, formatted, to the targets
                                   in the kdr-notification-targets secret (ntfy, webhook, email); /healthz, /metrics
  migrate                          apply the catalog migrations
  catalog rebuild                  rebuild the catalog's backups and WAL from the bucket's manifests and descriptors
                                   (this region's version ids; --service limits it to one service)
  standby seed --target <dir>      PostgreSQL: seed a warm standby from this region's copies (newest base + WAL),
                                   streaming from ${AGENT_ENV.primaryHost} while it answers
  standby follow [--target <dir>]  PostgreSQL (--target): keep staging newly copied WAL for the standby to replay;
                                   both: export how the standby follows (streaming, bytes behind)
  standby activate [--force] [--target <dir>]
                                   promote the standby (${AGENT_ENV.targetHost}) of ${AGENT_ENV.primaryHost}; refuses while
                                   the primary answers (unless --force) or the standby is behind; --target: its data
                                   directory, where the primary's password for streaming is removed
  standby switchover [--target <dir>]
                                   failback: fence ${AGENT_ENV.primaryHost} (read-only, writes paused), wait until the
                                   standby replayed its last write, promote the standby; refuses (fence lifted) otherwise
  healthz                          probe a running serve/cron/replicate process (for HEALTHCHECK)

every setting is an env var or the matching flag (below); secrets are files in ${SETTINGS.secretDir.default}
(another directory: --secret-dir); --json prints machine-readable output on stdout; the log goes to stderr.

settings (env, flag, default):
${settingsHelp()}`;

/** The settings part of --help, generated from the table in contract/settings.ts. */
function settingsHelp(): string {
  return (Object.keys(SETTINGS) as SettingKey[])
    .map((k) => {
      const d: SettingDef = SETTINGS[k];
      const dflt = d.default !== undefined ? ` [${d.default}]` : "";
      const values = d.values ? ` (${d.values.join("|")})` : "";
      return `  ${d.env.padEnd(33)} ${flagName(k).padEnd(30)} ${d.doc}${values}${dflt}`;
    })
    .join("\n");
}

const VALUED = ["--type", "--wait", "--target", "--time", "--backup-id", "--wal-dir", "--owner", "--limit"];
const BOOLEANS = new Set(["--json", "--pending", "--yes", "--force-overwrite-source", "--clean-target", "--logical", "--no-logical", "--once", "--all", "--force", "--help", "--version"]);

function out(json: boolean, obj: unknown, text: string): void {
  process.stdout.write(json ? JSON.stringify(obj, null, 2) + "\n" : text + "\n");
}

async function withCatalog<T>(s: Settings, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = await connectCatalog(s);
  try {
    return await fn(c);
  } finally {
    await closeCatalog(c);
  }
}

function parseTime(v: string | true | undefined): Date | undefined {
  if (v === undefined) return undefined;
  if (v === true || v === "latest") return undefined;
  if (!isIsoTimeWithZone(v)) throw new ConfigError(`--time '${v}' is not an ISO 8601 time with a zone: give e.g. 2026-11-28T21:04:05Z (or 'latest').`);
  return new Date(v);
}

const str = (v: string | true | undefined): string | undefined => (typeof v === "string" ? v : undefined);

export async function main(argv: string[]): Promise<number> {
  // The AWS SDK warns once per process that its 2027 releases need Node 22. The version is
  // pinned, so in a sidecar that is the same warning in every container's log at every start,
  // saying nothing about the backups; production images take the current LTS through BASE_IMAGE.
  // It is read when the first S3 client is built, so setting it here is in time.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const { positional, flags } = parseArgs(argv, BOOLEANS);
  const cmd = positional[0];
  if (flags.has("--version") || cmd === "version") {
    process.stdout.write(`kdr-agent ${AGENT_VERSION}\n`);
    return 0;
  }
  if (cmd === undefined || flags.has("--help") || cmd === "help") {
    process.stdout.write(USAGE + "\n");
    return cmd === undefined && !flags.has("--help") ? 2 : 0;
  }
  // A mistyped option must not be silently ignored (a backup with the wrong bucket, say).
  const known = new Set([...Object.keys(AGENT_ENV).map(flagName), ...BOOLEANS, ...VALUED]);
  const unknown = [...flags.keys()].filter((f) => !known.has(f));
  if (unknown.length) {
    process.stderr.write(`kdr-agent: unknown option ${unknown.join(", ")}: see 'kdr-agent --help' (every setting's env name has a --kebab-case flag).\n`);
    return 2;
  }
  // --json shapes stdout only: the log (progress, alerts) still goes to stderr, as in any other run.
  const json = flags.has("--json");
  const s = new Settings(flags);
  try {
    s.check();
    switch (cmd) {
      case "healthz":
        return await probe(s.metricsPort);
      case "backup": {
        const type = str(flags.get("--type")) ?? "full";
        if (type !== "full" && type !== "incremental") throw new ConfigError(`--type '${type}' is not a backup type: use full or incremental.`);
        const wait = flags.has("--wait") ? Number(flags.get("--wait")) : 0;
        if (flags.has("--logical") && flags.has("--no-logical")) throw new ConfigError("--logical and --no-logical contradict each other: give one, or neither (the dumps are then taken when due).");
        const logical = flags.has("--logical") ? true : flags.has("--no-logical") ? false : undefined;
        const r = await withCatalog(s, (c) => runBackup(s, c, type, { waitSeconds: wait, logical }));
        out(json, r, printSummary(r));
        return 0;
      }
      case "restore": {
        // The command line is judged whole before the catalog is reached.
        const point = s.get("recoveryPoint");
        const pointIsId = point !== undefined && /^[0-9a-f-]{36}$/.test(point);
        const backupId = str(flags.get("--backup-id")) ?? (pointIsId ? point : undefined);
        if (backupId !== undefined && !isUuid(backupId)) {
          throw new ConfigError(`--backup-id '${backupId}' is not a backup id: give the UUID 'kdr-agent list' shows.`);
        }
        const opts = {
          target: str(flags.get("--target")) ?? "",
          backupId,
          time: parseTime(flags.get("--time") ?? (point !== undefined && !pointIsId ? point : undefined)),
          walDir: str(flags.get("--wal-dir")),
          forceOverwriteSource: flags.has("--force-overwrite-source"),
          yes: flags.has("--yes"),
          cleanTarget: flags.has("--clean-target"),
          owner: str(flags.get("--owner")),
        };
        checkRestorePaths(s, opts);
        const r = await withCatalog(s, (c) => runRestore(s, c, opts));
        out(json, r, `restore of ${r.service} completed from backup ${r.backupId} into ${r.target}\n  target ${r.recoveryTarget}, reaches ${r.reaches}; SHA-256 of ${r.artifactsChecked} object(s) checked; ${fmtSeconds(r.durationSeconds)}${r.fellBack.map((f) => `\n  FELL BACK: ${f}`).join("")}\n  next: ${r.next}`);
        return 0;
      }
      case "verify": {
        if (flags.has("--pending")) {
          const limit = Number(str(flags.get("--limit")) ?? 5);
          if (!Number.isInteger(limit) || limit < 1) throw new ConfigError(`--limit '${flags.get("--limit")}' must be a whole number >= 1.`);
          const p = await withCatalog(s, (c) => runPendingVerify(s, c, limit));
          const lines = p.verified.map((v) => `verify ${v.backupId}: ${v.passed ? "PASSED" : "FAILED"}${v.error ? ` (${v.error})` : ""}`);
          for (const w of p.notHereYet) lines.push(`verify ${s.service}: ${w}`);
          if (p.verified.length === 0 && p.notHereYet.length === 0 && !p.stoppedBy) lines.push(`verify ${s.service}: no backup waiting for verification`);
          if (p.stoppedBy) lines.push(`verify ${s.service}: stopped, nothing more judged: ${p.stoppedBy}`);
          out(json, p, lines.join("\n"));
          return p.stoppedBy || p.verified.some((v) => !v.passed) ? 1 : 0;
        }
        const r = await withCatalog(s, (c) => runVerify(s, c, str(flags.get("--backup-id"))));
        out(json, r, `verify ${r.backupId}: ${r.passed ? "PASSED" : "FAILED"}\n${r.checks.map((x) => "  " + x).join("\n")}${r.error ? `\n  error: ${r.error}` : ""}`);
        return r.passed ? 0 : 1;
      }
      case "list": {
        const all = flags.has("--all");
        const rows = await withCatalog(s, (c) => listBackups(c, { tenantId: s.tenantId, service: all ? undefined : s.service, limit: Number(str(flags.get("--limit")) ?? 50) }));
        const text = rows
          .map((r) =>
            [
              r.backupId,
              r.serviceName,
              r.backupType.padEnd(11),
              r.backupStatus.padEnd(9),
              (r.completedAt ?? r.failedAt ?? r.createdAt)?.toISOString(),
              r.backupSize !== null ? fmtBytes(r.backupSize).padStart(10) : "".padStart(10),
              r.compressionRatio !== null ? `ratio ${r.compressionRatio}` : "",
              r.verifyStatus ? `verify ${r.verifyStatus}` : "unverified",
              r.errorMessage ? `: ${r.errorMessage.slice(0, 100)}` : "",
            ].join("  "),
          )
          .join("\n");
        out(json, rows, text || "no backups");
        return 0;
      }
      case "prune": {
        const r = await withCatalog(s, (c) => runPrune(s, c));
        out(json, r, `prune ${r.service}: expired ${r.expired.length}, kept ${r.kept.length} (newest good full and what it needs), deleted ${r.objectsDeleted} object(s) expired ${r.walSegmentsExpired} WAL segment(s); ${r.objectsLeftToLifecycle} still locked (the bucket lifecycle removes them)`);
        return 0;
      }
      case "health": {
        const r = await withCatalog(s, (c) => runHealth(s, c));
        out(json, r, r.message);
        return r.healthy ? 0 : 1;
      }
      case "serve":
        return await serve(s);
      case "cron":
        await cron(s);
        return 0;
      case "replicate":
        return await replicate(s, flags.has("--once"));
      case "notify-relay":
        await notifyRelay(s);
        return 0;
      case "catalog": {
        if (positional[1] !== "rebuild") throw new ConfigError(`'kdr-agent catalog ${positional[1] ?? ""}' is not a command: the catalog command is 'kdr-agent catalog rebuild'.`);
        const r = await withCatalog(s, (c) => runRebuild(s, c, { service: s.get("service") }));
        out(
          json,
          r,
          `catalog rebuilt from s3://${r.bucket} (region ${r.region}): ${r.backups.inserted} backup(s) added, ${r.backups.completed} completed from their manifests, ${r.backups.known} already known; ` +
            `${r.walSegments.inserted} WAL segment(s) added, ${r.walSegments.known} already known; ${r.copiesRecorded} copy version(s) recorded` +
            (r.skipped.length ? `\n  skipped ${r.skipped.length}:\n${r.skipped.map((x) => `    ${x.key}: ${x.reason}`).join("\n")}` : ""),
        );
        return 0;
      }
      case "standby": {
        const sub = positional[1];
        const target = str(flags.get("--target")) ?? "";
        if (sub === "seed") {
          const r = await withCatalog(s, (c) => runSeed(s, c, target));
          out(json, r, r.alreadySeeded ? `standby ${r.service}: ${r.target} already seeded` : `standby ${r.service}: seeded ${r.target} from backup ${r.restore!.backupId} (${r.restore!.walSegments} WAL file(s)); start PostgreSQL on it, then 'standby follow'`);
          return 0;
        }
        if (sub === "follow") {
          await follow(s, target, () => connectCatalog(s));
          return 0;
        }
        if (sub === "activate") {
          const r = await runActivate(s, () => connectCatalog(s), { force: flags.has("--force"), target: target || undefined });
          out(
            json,
            r,
            r.alreadyActive
              ? `standby ${r.service}: ${r.standby} is already the primary; nothing done`
              : `standby ${r.service}: ${r.standby} promoted in ${fmtSeconds(r.seconds.total)} (primary check ${fmtSeconds(r.seconds.primaryCheck)}, catch-up ${fmtSeconds(r.seconds.catchUp)}, promote ${fmtSeconds(r.seconds.promote)})` +
                  `${r.recoveryPoint ? `; newest commit ${r.recoveryPoint}` : ""}${r.recoveryId ? `; disaster_recovery_log ${r.recoveryId}` : ""}${r.notes.length ? `\n  ${r.notes.join("\n  ")}` : ""}`,
          );
          return 0;
        }
        if (sub === "switchover") {
          const r = await runSwitchover(s, () => connectCatalog(s), { target: target || undefined });
          out(
            json,
            r,
            r.alreadyActive
              ? `standby ${r.service}: ${r.standby} is already the primary; nothing done`
              : `standby ${r.service}: ${r.standby} took over from ${r.primary} at ${r.handedOverAt} in ${fmtSeconds(r.seconds.total)} (fence ${fmtSeconds(r.seconds.fence)}, catch-up ${fmtSeconds(r.seconds.catchUp)}, promote ${fmtSeconds(r.seconds.promote)}); ` +
                  `${r.primary} stays fenced (read-only) until its stack makes it a standby${r.recoveryId ? `; disaster_recovery_log ${r.recoveryId}` : ""}${r.notes.length ? `\n  ${r.notes.join("\n  ")}` : ""}`,
          );
          return 0;
        }
        throw new ConfigError(`'kdr-agent standby ${sub ?? ""}' is not a command: use standby seed, standby follow, standby activate or standby switchover.`);
      }
      case "migrate": {
        const r = await withCatalog(s, (c) => migrate(c, { dir: s.get("migrationsDir"), log }));
        out(json, r, `catalog migrations: applied ${r.applied.length} (${r.applied.join(", ") || "none"}), already applied ${r.skipped.length}`);
        return 0;
      }
      default:
        process.stderr.write(`kdr-agent: unknown command '${cmd}'\n\n${USAGE}\n`);
        return 2;
    }
  } catch (e) {
    const msg = (e as Error).message;
    process.stderr.write(`kdr-agent ${cmd}: ${msg}\n`);
    if (json) process.stdout.write(JSON.stringify({ error: msg, kind: e instanceof ConfigError ? "config" : "failure" }) + "\n");
    return e instanceof ConfigError || e instanceof LockBusyError ? 2 : 1;
  }
}

/**
 * A one-shot run stopped with SIGTERM/SIGINT (Swarm reschedules, an operator presses ^C)
 * records its row as failed with the reason, instead of leaving it for the next run to reconcile.
 * serve/cron/replicate install their own handlers.
 */
function stopOneShotOnSignal(cmd: string | undefined): void {
  // standby follow stops itself between two passes (a staged segment is renamed whole or not at all).
  if (cmd === "serve" || cmd === "cron" || cmd === "replicate" || cmd === "standby" || cmd === "notify-relay") return;
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    process.once(sig, () => {
      void failInflight(`stopped by ${sig} before it finished; nothing of this run is used`).finally(() => process.exit(sig === "SIGTERM" ? 143 : 130));
    });
  }
}

if (require.main === module) {
  stopOneShotOnSignal(process.argv.slice(2).find((a) => !a.startsWith("--")));
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // Long-lived handles (pg pools, sockets) must not keep a finished command alive.
      setTimeout(() => process.exit(code), 200).unref();
    },
    (err: unknown) => {
      process.stderr.write(`kdr-agent: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
