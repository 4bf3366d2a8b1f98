/**
 * `kdr-agent standby follow` of a Redis replica (agent/commands/standby.ts has the PostgreSQL
 * standby): the replication watched as numbers, and the replica's INFO that activation reads too.
 */
import { randomUUID } from "node:crypto";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type pg from "pg";
import { Gauge } from "prom-client";
import * as cat from "../catalog.js";
import type { Settings } from "../config.js";
import { redisArgs } from "../engines/redis.js";
import { registry } from "../metrics.js";
import { httpServer } from "../serve.js";
import { log } from "../storage/progress.js";
import { primaryPort } from "./shared.js";

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const streamingGauge = new Gauge({ name: "kdr_standby_streaming", help: "1 while the standby streams from its primary (PostgreSQL: WAL streaming, else it replays what was copied to this region; Redis: the replica's link is up)", labelNames: ["service"], registers: [registry] });
export const replayBytesGauge = new Gauge({ name: "kdr_standby_replay_lag_bytes", help: "Bytes the primary has written that the standby has not applied (PostgreSQL: WAL not replayed; Redis: replication offset), measured while the primary answers", labelNames: ["service"], registers: [registry] });

/** One redis-cli command to the standby, or to `host` (the primary, with the same credentials); its trimmed reply. */
export async function redisCli(s: Settings, to: { host?: string; port?: number; timeoutMs?: number }, ...cmd: string[]): Promise<string> {
  const { args, env } = redisArgs(s, to.host, to.port);
  const r = await run("redis-cli", [...args, "--no-auth-warning", ...cmd], { env, timeout: to.timeoutMs ?? 10000 });
  return r.stdout.trim();
}

/** INFO replication of the standby, or of `host` (the primary, with the same credentials). */
export async function redisInfo(s: Settings, host?: string, port?: number): Promise<Record<string, string>> {
  const out = await redisCli(s, { host, port }, "INFO", "replication");
  return Object.fromEntries(
    out
      .split(/\r?\n/)
      .filter((l) => l.includes(":"))
      .map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]),
  );
}

/** This follower process, as its looks name it in the catalog. */
const FOLLOWER_ID = randomUUID();

/**
 * A follower stopped on purpose (SIGTERM: its standby removed from the stack, or the follower
 * replaced) withdraws its standby's row, unless the standby was promoted: a row nobody updates
 * would read as a follower gone silent for ever. One that vanished without stopping leaves it.
 */
export async function withdrawLook(c: pg.Client | undefined, s: Settings): Promise<void> {
  const region = s.get("s3Region");
  if (!c || !region) return;
  await cat.withdrawStandby(c, { tenantId: s.tenantId, service: s.service, region }).then(
    () => log(`standby follow ${s.service}: stopped; its standby's row is withdrawn from the catalog (a promoted standby's stays)`),
    (e: Error) => log(`standby follow ${s.service}: stopped; its standby's row could not be withdrawn (${e.message}): status will call its follower silent`),
  );
}

/**
 * Records a look in the catalog. A catalog that refuses it (older than migration 012) does not
 * stop the following: said once, and again only when the reason changes. Returns the reason, or "".
 */
export async function recordLook(c: pg.Client, r: cat.StandbyReport, said: string): Promise<string> {
  try {
    // A follower that was running when its standby was promoted no longer replaces the promoted row.
    await cat.reportStandby(c, { ...r, reporter: r.reporter ?? FOLLOWER_ID });
    if (said) log(`standby follow ${r.service}: the catalog takes this standby's replication again`);
    return "";
  } catch (e) {
    const msg = (e as Error).message;
    if (msg !== said) log(`warning: standby follow ${r.service}: could not record the standby's replication in the catalog (${msg}); run 'kryonix-dr migrate' if the catalog is older than this agent. Following goes on; status and the health job cannot judge this standby meanwhile.`);
    return msg;
  }
}

/**
 * `standby follow` of a Redis replica: nothing to stage (it syncs from its primary by itself), so
 * it watches the replication instead, as numbers (link up, offset lag in bytes), until stopped.
 */
/** A look at the replica, as the catalog keeps it for `status` and the health job. */
export function redisReport(s: Settings, info: Record<string, string> | undefined, behind: number | undefined, error?: string): cat.StandbyReport {
  const state = !info ? "unreachable" : info.role === "master" ? "promoted" : "following";
  const following = state === "following";
  const up = following && info!.master_link_status === "up";
  // Nothing behind: no lag. Behind: since the link's last I/O while it is up, since it went down otherwise.
  const since = Number(up ? info!.master_last_io_seconds_ago : info?.master_link_down_since_seconds);
  return {
    tenantId: s.tenantId,
    service: s.service,
    region: s.require("s3Region"),
    engine: "redis",
    standbyHost: s.require("targetHost"),
    primaryHost: s.require("primaryHost"),
    state,
    streaming: up,
    lagBytes: following && behind !== undefined ? behind : null,
    lagSeconds: !following || behind === undefined ? null : behind === 0 ? 0 : Number.isFinite(since) && since >= 0 ? since : null,
    lastReplayedAt: null,
    rpoTargetSeconds: s.get("rpoSeconds") ? s.int("rpoSeconds") : null,
    reportIntervalSeconds: s.int("followIntervalSeconds"),
    detail: state === "unreachable" ? (error ?? null) : following ? `replication offset ${info!.slave_repl_offset ?? "?"}, link ${info!.master_link_status ?? "?"}` : null,
  };
}

export async function followRedis(s: Settings, connect: () => Promise<pg.Client>): Promise<void> {
  const interval = s.int("followIntervalSeconds") * 1000;
  const primary = s.require("primaryHost");
  let stopping = false;
  for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => (stopping = true));
  let lastError = "";
  let healthy = false;
  let said = "";
  let c: pg.Client | undefined;
  let reportError = "";
  /** Each look goes to the catalog too; a catalog that does not answer only loses the record. */
  const record = async (r: cat.StandbyReport) => {
    try {
      c ??= await connect();
    } catch (e) {
      const msg = `the catalog does not answer: ${(e as Error).message}`;
      if (msg !== reportError) log(`warning: standby follow ${s.service}: ${msg}; watching goes on, status and the health job cannot judge this standby meanwhile`);
      reportError = msg;
      return;
    }
    reportError = await recordLook(c, r, reportError);
    if (reportError) {
      await cat.closeCatalog(c);
      c = undefined;
    }
  };
  const srv = httpServer(s.metricsPort, () => ({ ok: healthy, detail: { service: s.service, role: "standby-follower", lastError: lastError || undefined } }));
  log(`standby follow ${s.service}: watching the replication of ${s.require("targetHost")} from ${primary} every ${interval / 1000} s`);
  while (!stopping) {
    try {
      const info = await redisInfo(s);
      if (info.role === "master") {
        streamingGauge.set({ service: s.service }, 0);
        if (said !== "master") log(`standby follow ${s.service}: ${s.require("targetHost")} is a master (promoted): nothing to watch; idle`);
        said = "master";
        await record(redisReport(s, info, undefined));
      } else {
        const up = info.master_link_status === "up";
        streamingGauge.set({ service: s.service }, up ? 1 : 0);
        const offset = Number(info.slave_repl_offset ?? "NaN");
        const primaryOffset = await redisInfo(s, primary, primaryPort(s)).then((p) => Number(p.master_repl_offset ?? "NaN"), () => NaN);
        const behind = Number.isFinite(offset) && Number.isFinite(primaryOffset) ? Math.max(0, primaryOffset - offset) : undefined;
        if (behind !== undefined) replayBytesGauge.set({ service: s.service }, behind);
        else replayBytesGauge.remove({ service: s.service });
        await record(redisReport(s, info, behind));
        // Said when it changes, not at every look.
        const now = up ? "up" : "down";
        if (now !== said) {
          log(
            up
              ? `standby follow ${s.service}: the replica's link to ${info.master_host ?? primary} is up${behind !== undefined ? ` (${behind} bytes behind)` : ""}`
              : `standby follow ${s.service}: the replica's link to ${info.master_host ?? primary} is ${info.master_link_status ?? "unknown"}${info.master_link_down_since_seconds ? ` for ${info.master_link_down_since_seconds} s` : ""}: it holds what it had, and follows nothing`,
          );
          said = now;
        }
      }
      lastError = "";
      healthy = true;
    } catch (e) {
      const msg = (e as Error).message;
      if (msg !== lastError) log(`standby follow ${s.service}: ${msg} (retrying every ${interval / 1000} s)`);
      lastError = msg;
      healthy = false;
      // The replica does not answer: it follows nothing anyone can see.
      streamingGauge.set({ service: s.service }, 0);
      replayBytesGauge.remove({ service: s.service });
      said = "";
      await record(redisReport(s, undefined, undefined, msg));
    }
    await sleep(interval);
  }
  srv.close();
  await withdrawLook(c, s);
  if (c) await cat.closeCatalog(c);
}

