/**
 * Long-running modes. serve: the backup sidecar (schedules from env, WAL streaming for
 * PostgreSQL, /healthz and /metrics). cron: a list of {name, schedule, command} jobs, each run
 * as a child agent process so one job's crash cannot take the others down.
 */
import { spawn } from "node:child_process";
import { createServer, type Server } from "node:http";
import { Cron } from "croner";
import type pg from "pg";
import { AGENT_ENV } from "../contract/index.js";
import { humanDuration, worstGapSeconds } from "../contract/schedule.js";
import { recoverMaintenance } from "./engines/consistency.js";
import * as cat from "./catalog.js";
import { ConfigError, type Settings } from "./config.js";
import { pgConnect, pgEnv } from "./engines/postgres.js";
import type { WalStreamer } from "./engines/postgres-wal.js";
import { acquireServiceLock } from "./lock.js";
import { m, registry } from "./metrics.js";
import { failInflight, printSummary, runBackup } from "./commands/backup.js";
import { sendEvent } from "./notify.js";
import { runHealth } from "./commands/health.js";
import { runPrune } from "./commands/prune.js";
import { recipient } from "./commands/shared.js";
import { startWalStreamer } from "./commands/wal-streamer.js";
import { log } from "./storage/progress.js";
import { Storage } from "./storage/s3.js";

export function httpServer(port: number, health: () => { ok: boolean; detail: Record<string, unknown> }): Server {
  const srv = createServer((req, res) => {
    if (req.url === "/metrics") {
      registry.metrics().then(
        (body) => {
          res.writeHead(200, { "content-type": registry.contentType });
          res.end(body);
        },
        (e: Error) => {
          res.writeHead(500);
          res.end(e.message);
        },
      );
      return;
    }
    if (req.url === "/healthz") {
      const h = health();
      res.writeHead(h.ok ? 200 : 503, { "content-type": "application/json" });
      res.end(JSON.stringify({ ok: h.ok, ...h.detail }));
      return;
    }
    res.writeHead(404);
    res.end("not found: try /healthz or /metrics\n");
  });
  srv.listen(port, "0.0.0.0");
  return srv;
}

function schedule(name: string, expr: string | undefined, fn: () => Promise<void>): Cron | undefined {
  if (!expr) return undefined;
  try {
    // protect: a run still going when the next is due is skipped, never overlapped.
    return new Cron(expr, { protect: true, name, catch: (e: unknown) => log(`${name}: ${(e as Error).message}`) }, fn);
  } catch (e) {
    throw new ConfigError(`schedule '${expr}' for ${name} is not a valid cron expression (${(e as Error).message}): use 5 or 6 fields, e.g. '0 2 * * *'.`);
  }
}

/** Connection failures that mean "not up yet", not "misconfigured". */
const NOT_UP_YET = /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|timeout expired|starting up|shutting down|Connection terminated/i;

/**
 * A sidecar starts with its database (a stack deploy, a node reboot): it waits for it to answer,
 * saying so once, instead of exiting as misconfigured and leaving a failed task per attempt.
 * A refused login, or a database still away after `seconds`, is still the error it names.
 */
export async function waitForDatabase(s: Settings, seconds = 180): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  let waited = false;
  for (;;) {
    try {
      await cat.closeCatalog(await pgConnect(s));
      if (waited) log(`serve ${s.service}: PostgreSQL answers now`);
      return;
    } catch (e) {
      const why = (e as Error).message;
      if (!NOT_UP_YET.test(why) || Date.now() > deadline) throw e;
      if (!waited) log(`serve ${s.service}: PostgreSQL at ${pgEnv(s).PGHOST}:${pgEnv(s).PGPORT} does not answer yet (${NOT_UP_YET.exec(why)![0]}); waiting up to ${seconds} s for it`);
      waited = true;
      await new Promise((r) => setTimeout(r, 3000));
    }
  }
}

export async function serve(s: Settings): Promise<number> {
  const service = s.service;
  const engine = s.engine;
  s.tenantId;
  const storage = Storage.fromSettings(s);
  const c = await cat.connectCatalog(s);
  let streamer: WalStreamer | undefined;
  let ownStreamer: Awaited<ReturnType<typeof startWalStreamer>> | undefined;
  let walLock: Awaited<ReturnType<typeof acquireServiceLock>> | undefined;
  let lastError: string | undefined;
  if (engine === "postgres") {
    const rcpt = recipient(s);
    await waitForDatabase(s);
    walLock = await acquireServiceLock(c, s.stateDir, `wal:${service}`, 300);
    streamer = ownStreamer = await startWalStreamer(s, storage, rcpt);
    streamer.onError = (e) => {
      lastError = e.message;
      log(`wal ${service}: ${e.message}`);
    };
    log(`serve ${service}: streaming WAL (slot ${streamer.slot}), switching segments every ${s.walSwitchSeconds} s when there is activity`);
  }
  if (engine === "volume" && s.get("maintenanceMode") === "nextcloud") recoverMaintenance(s.require("volumePath"), "was left on by a backup that did not finish");
  const started = Date.now();
  let lastRpo = 0;
  const tick = setInterval(() => {
    if (streamer) m.walLag.set({ service }, (Date.now() - (streamer.lastUploadAt?.getTime() ?? started)) / 1000);
    // kdr_recovery_point_timestamp_seconds is what the RPO alerts read: keep it current, not only
    // when a health job runs (a newer verified backup or more WAL moves it).
    if (Date.now() - lastRpo >= 15_000) {
      lastRpo = Date.now();
      void runHealth(s, c).catch((e: Error) => (lastError = `rpo: ${e.message}`));
    }
  }, 5000);
  const jobs = [
    schedule(`${service} full`, s.get("scheduleFull"), async () => log(printSummary(await runBackup(s, c, "full", { streamer, waitSeconds: 600 })))),
    schedule(`${service} incremental`, s.get("scheduleIncremental"), async () => log(printSummary(await runBackup(s, c, "incremental", { streamer, waitSeconds: 600 })))),
    schedule(`${service} health`, s.get("scheduleHealth"), async () => log((await runHealth(s, c)).message)),
    schedule(`${service} prune`, s.get("schedulePrune"), async () => {
      const p = await runPrune(s, c);
      log(`prune ${service}: expired ${p.expired.length}, kept ${p.kept.length}, deleted ${p.objectsDeleted} object(s), expired ${p.walSegmentsExpired} WAL segment(s)`);
    }),
  ].filter((j): j is Cron => !!j);
  await reportSettings(s, c);
  // Each failure counter exists at 0 from the start: increase() cannot see a series' first
  // sample as a rise, so the first failure after a start would otherwise never alert.
  for (const type of ["full", "incremental", "prune"]) m.failures.inc({ service, type }, 0);
  // The target is configuration: served from the first scrape, not only once a health check has
  // reached the catalog (a PostgreSQL sidecar may wait minutes for its database first).
  m.rpoTarget.set({ service }, s.rpoSeconds);
  const srv = httpServer(s.metricsPort, () => {
    const lagOk = !streamer || Date.now() - (streamer.lastUploadAt?.getTime() ?? started) < Math.max(s.rpoSeconds, s.walSwitchSeconds * 4) * 1000;
    return { ok: lagOk, detail: { service, engine, walSegmentsUploaded: streamer?.uploaded, lastWalSegment: streamer?.lastSegment, lastError, jobs: jobs.map((j) => ({ name: j.name, next: j.nextRun()?.toISOString() })) } };
  });
  log(`serve ${service}: /healthz and /metrics on :${s.metricsPort}; ${jobs.length} schedule(s): ${jobs.map((j) => `${j.name} -> next ${j.nextRun()?.toISOString()}`).join("; ") || "none"}`);
  const lost = await new Promise<string | undefined>((resolve) => {
    const stop = () => resolve(undefined);
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
    void Promise.race([cat.catalogLost(c), ...(ownStreamer ? [ownStreamer.catalogLost] : [])]).then(resolve);
  });
  if (lost === undefined) log(`serve ${service}: stopping`);
  else {
    log(
      `serve ${service}: lost its catalog connection (${lost}); exiting so that Swarm starts the sidecar again with a new one. ` +
        `WAL not yet recorded stays in the spool and is recorded then; a run the catalog did not hear the end of is completed from its manifest, or failed, by the next run`,
    );
  }
  for (const j of jobs) j.stop();
  const stopped = await failInflight("the sidecar was stopped (SIGTERM) during this run; nothing of it is used");
  if (stopped) log(`serve ${service}: recorded ${stopped} unfinished run(s) as failed`);
  clearInterval(tick);
  srv.close();
  await streamer?.stop();
  await walLock?.release();
  await cat.closeCatalog(c);
  return lost === undefined ? 0 : cat.EXIT_CATALOG_LOST;
}

/**
 * Writes the sidecar's effective schedule and targets into its health row, so the catalog (and
 * `status`, and alerts) judge its freshness by the schedule it really runs: a service is stale
 * after twice the worst gap between its scheduled backups. A catalog that cannot take them
 * (not migrated) is said once; the sidecar still backs up.
 */
export async function reportSettings(s: Settings, c: pg.Client): Promise<void> {
  const full = s.get("scheduleFull") ?? "";
  const incremental = s.get("scheduleIncremental") ?? "";
  const gap = worstGapSeconds([full, incremental]);
  try {
    await cat.setHealthSettings(c, {
      tenantId: s.tenantId,
      service: s.service,
      backupFrequencySeconds: Number.isFinite(gap) ? gap : undefined,
      rpoSeconds: s.rpoSeconds,
      rtoSeconds: s.rtoSeconds,
      scheduleFull: full,
      scheduleIncremental: incremental,
    });
    log(
      `serve ${s.service}: catalog health settings: ${Number.isFinite(gap) ? `a backup at least every ${humanDuration(gap)} (stale after ${humanDuration(2 * gap)})` : "no backup schedule"}, ` +
        `RPO ${humanDuration(s.rpoSeconds)}, RTO ${humanDuration(s.rtoSeconds)}`,
    );
  } catch (e) {
    log(`warning: could not record ${s.service}'s schedule and targets in the catalog (${(e as Error).message}); run 'kryonix-dr migrate' if the catalog schema is older than this agent. Backups go on.`);
  }
}

export interface CronJob {
  name: string;
  schedule: string;
  command: string[];
}

export function parseCronJobs(raw: string | undefined): CronJob[] {
  if (!raw) throw new ConfigError(`${AGENT_ENV.cronJobs} is not set: give a JSON array of {"name","schedule","command":[agent args]}.`);
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    throw new ConfigError(`${AGENT_ENV.cronJobs} is not valid JSON (${(e as Error).message}): give e.g. [{"name":"verify","schedule":"0 3 * * *","command":["verify"]}].`);
  }
  if (!Array.isArray(v)) throw new ConfigError(`${AGENT_ENV.cronJobs} must be a JSON array of jobs.`);
  return v.map((j: Partial<CronJob>, i) => {
    if (!j || typeof j.schedule !== "string" || !Array.isArray(j.command) || j.command.some((x) => typeof x !== "string")) {
      throw new ConfigError(`${AGENT_ENV.cronJobs}[${i}] needs "schedule" (string) and "command" (array of strings).`);
    }
    return { name: j.name ?? `job-${i}`, schedule: j.schedule, command: j.command };
  });
}

function flagValue(argv: string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  if (i >= 0 && i + 1 < argv.length) return argv[i + 1];
  const eq = argv.find((a) => a.startsWith(flag + "="));
  return eq?.slice(flag.length + 1);
}

/** argv that starts this same agent again (bundle or tsx) with other arguments. */
export function selfArgv(args: string[]): [string, string[]] {
  return [process.execPath, [...process.execArgv, process.argv[1]!, ...args]];
}

export async function cron(s: Settings): Promise<void> {
  const jobs = parseCronJobs(s.get("cronJobs"));
  const last: Record<string, { at?: string; exit?: number | null }> = {};
  const runs = jobs.map((j) =>
    schedule(j.name, j.schedule, () => {
      const [cmd, args] = selfArgv(j.command);
      log(`cron ${j.name}: kdr-agent ${j.command.join(" ")}`);
      // --json so this process can carry the job's result into its own /metrics.
      const wantsJson = ["health", "verify", "backup", "prune"].includes(j.command[0]!) && !j.command.includes("--json");
      const [c2, a2] = wantsJson ? selfArgv([...j.command, "--json"]) : [cmd, args];
      const svc = flagValue(j.command, "--service") ?? s.get("service") ?? "cron";
      const t0 = Date.now();
      return new Promise<void>((resolve) => {
        const p = spawn(c2, a2, { stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        // The log passes through; its tail is kept for a drill's notice (the error is at the end).
        let tail = "";
        p.stdout!.on("data", (d: Buffer) => {
          out += d;
          process.stdout.write(d);
        });
        p.stderr!.on("data", (d: Buffer) => {
          tail = (tail + d.toString()).slice(-1500);
          process.stderr.write(d);
        });
        p.on("close", (code) => {
          if (j.command[0] === "restore") {
            const secs = Math.round((Date.now() - t0) / 1000);
            const lines = tail.trim().split("\n").slice(-6).join("\n");
            void sendEvent(s, {
              event: code === 0 ? "drill-passed" : "drill-failed",
              service: svc,
              type: "restore",
              detail: code === 0 ? `cron ${j.name}: the restore drill passed in ${secs} s` : `cron ${j.name}: the restore drill failed after ${secs} s (exit ${code}); its log ends:\n${lines}`,
            });
          }
          last[j.name] = { at: new Date().toISOString(), exit: code };
          if (code !== 0 && j.command[0] !== "health") m.failures.inc({ service: svc, type: j.command[0]! });
          if (code === 0 && j.command[0] === "restore") m.lastDrill.set({ service: svc }, Date.now() / 1000);
          try {
            const r = JSON.parse(out) as { rpoTargetSeconds?: number; passed?: boolean; recoveryPoint?: string | null };
            if (j.command[0] === "health" && r.rpoTargetSeconds !== undefined) {
              m.rpoTarget.set({ service: svc }, r.rpoTargetSeconds);
              if (r.recoveryPoint) m.recoveryPoint.set({ service: svc }, new Date(r.recoveryPoint).getTime() / 1000);
            }
            if (j.command[0] === "verify" && r.passed && r.recoveryPoint) m.lastVerified.set({ service: svc }, new Date(r.recoveryPoint).getTime() / 1000);
          } catch {
            /* not JSON (an error): the exit code says enough */
          }
          log(`cron ${j.name}: exit ${code}`);
          resolve();
        });
      });
    })!,
  );
  // At 0 from the start, as in serve: the first failed job must be a rise increase() sees.
  for (const j of jobs) if (j.command[0] !== "health") m.failures.inc({ service: flagValue(j.command, "--service") ?? s.get("service") ?? "cron", type: j.command[0]! }, 0);
  const srv = httpServer(s.metricsPort, () => ({ ok: true, detail: { jobs: runs.map((r) => ({ name: r.name, next: r.nextRun()?.toISOString(), last: last[r.name!] })) } }));
  log(`cron: ${runs.length} job(s): ${runs.map((r) => `${r.name} next ${r.nextRun()?.toISOString()}`).join("; ")}`);
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", () => resolve());
    process.once("SIGINT", () => resolve());
  });
  for (const r of runs) r.stop();
  srv.close();
}
