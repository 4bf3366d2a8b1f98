/**
 * `kdr-agent standby follow` of a Redis replica (agent/commands/standby.ts has the PostgreSQL
 * standby): the replication watched as numbers, and the replica's INFO that activation reads too.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Gauge } from "prom-client";
import type { Settings } from "../config.js";
import { redisArgs } from "../engines/redis.js";
import { registry } from "../metrics.js";
import { httpServer } from "../serve.js";
import { log } from "../storage/progress.js";

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const streamingGauge = new Gauge({ name: "kdr_standby_streaming", help: "1 while the standby streams from its primary (PostgreSQL: WAL streaming, else it replays what was copied to this region; Redis: the replica's link is up)", labelNames: ["service"], registers: [registry] });
export const replayBytesGauge = new Gauge({ name: "kdr_standby_replay_lag_bytes", help: "Bytes the primary has written that the standby has not applied (PostgreSQL: WAL not replayed; Redis: replication offset), measured while the primary answers", labelNames: ["service"], registers: [registry] });

/** INFO replication of the standby, or of `host` (the primary, with the same credentials). */
export async function redisInfo(s: Settings, host?: string): Promise<Record<string, string>> {
  const { args, env } = redisArgs(s, host);
  const r = await run("redis-cli", [...args, "--no-auth-warning", "INFO", "replication"], { env, timeout: 10000 });
  return Object.fromEntries(
    r.stdout
      .split(/\r?\n/)
      .filter((l) => l.includes(":"))
      .map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]),
  );
}

/**
 * `standby follow` of a Redis replica: nothing to stage (it syncs from its primary by itself), so
 * it watches the replication instead, as numbers (link up, offset lag in bytes), until stopped.
 */
export async function followRedis(s: Settings): Promise<void> {
  const interval = s.int("followIntervalSeconds") * 1000;
  const primary = s.require("primaryHost");
  let stopping = false;
  for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => (stopping = true));
  let lastError = "";
  let healthy = false;
  let said = "";
  const srv = httpServer(s.metricsPort, () => ({ ok: healthy, detail: { service: s.service, role: "standby-follower", lastError: lastError || undefined } }));
  log(`standby follow ${s.service}: watching the replication of ${s.require("targetHost")} from ${primary} every ${interval / 1000} s`);
  while (!stopping) {
    try {
      const info = await redisInfo(s);
      if (info.role === "master") {
        streamingGauge.set({ service: s.service }, 0);
        if (said !== "master") log(`standby follow ${s.service}: ${s.require("targetHost")} is a master (promoted): nothing to watch; idle`);
        said = "master";
      } else {
        const up = info.master_link_status === "up";
        streamingGauge.set({ service: s.service }, up ? 1 : 0);
        const offset = Number(info.slave_repl_offset ?? "NaN");
        const primaryOffset = await redisInfo(s, primary).then((p) => Number(p.master_repl_offset ?? "NaN"), () => NaN);
        const behind = Number.isFinite(offset) && Number.isFinite(primaryOffset) ? Math.max(0, primaryOffset - offset) : undefined;
        if (behind !== undefined) replayBytesGauge.set({ service: s.service }, behind);
        else replayBytesGauge.remove({ service: s.service });
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
    }
    await sleep(interval);
  }
  srv.close();
}

