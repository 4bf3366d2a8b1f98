/**
 * Throwaway Redis servers for tests: the host's redis-server on a free loopback port with its
 * own directory (RDB files land there), password-protected like a production Redis.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort, onProcessEnd } from "./tmp-postgres.js";

export const REDIS_SERVER = process.env.KDR_REDIS_SERVER ?? "/usr/bin/redis-server";

export interface TmpRedisOptions {
  /** requirepass; a random one by default, `false` for none. */
  password?: string | false;
  /** Another address to listen on besides 127.0.0.1. */
  listen?: string;
  /** Extra redis.conf directives, e.g. `{ appendonly: "yes" }`. */
  settings?: Record<string, string>;
}

export interface TmpRedis {
  host: "127.0.0.1";
  port: number;
  password?: string;
  /** Working directory (dump.rdb, appendonly files, log). */
  dataDir: string;
  logFile: string;
  /** Stops the server without saving and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** Sends one inline command list and resolves with the raw reply (enough for PING/AUTH). */
function rawCommand(port: number, lines: string[], timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: "127.0.0.1", port });
    let buf = "";
    const t = setTimeout(() => {
      sock.destroy();
      reject(new Error("timeout"));
    }, timeoutMs);
    sock.on("error", (e) => {
      clearTimeout(t);
      reject(e);
    });
    sock.on("connect", () => sock.write(lines.map((l) => l + "\r\n").join("")));
    sock.on("data", (d) => {
      buf += d;
      if (buf.split("\r\n").length > lines.length) {
        clearTimeout(t);
        sock.end();
        resolve(buf);
      }
    });
  });
}

export async function startTmpRedis(opts: TmpRedisOptions = {}): Promise<TmpRedis> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "kdrtest-redis-"));
  const logFile = path.join(dataDir, "redis.log");
  const password = opts.password === false ? undefined : (opts.password ?? randomBytes(18).toString("hex"));
  let proc: ChildProcess | undefined;
  const cleanupSync = () => {
    proc?.kill("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  };
  const unregister = onProcessEnd(cleanupSync);

  let lastErr = "";
  for (let attempt = 0; attempt < 4; attempt++) {
    const port = await freePort();
    const conf: Record<string, string> = {
      bind: ["127.0.0.1", ...(opts.listen ? [opts.listen] : [])].join(" "),
      port: String(port),
      dir: dataDir,
      logfile: logFile,
      daemonize: "no",
      "protected-mode": password ? "yes" : "no",
      save: '""',
      ...(password ? { requirepass: password } : {}),
      ...(opts.settings ?? {}),
    };
    const confFile = path.join(dataDir, "redis.conf");
    writeFileSync(confFile, Object.entries(conf).map(([k, v]) => `${k} ${v}`).join("\n") + "\n", { mode: 0o600 });
    const p = spawn(REDIS_SERVER, [confFile], { stdio: "ignore" });
    proc = p;
    let exited = false;
    p.on("exit", () => (exited = true));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && !exited) {
      try {
        const reply = await rawCommand(port, password ? [`AUTH ${password}`, "PING"] : ["PING"]);
        if (reply.includes("+PONG")) {
          return {
            host: "127.0.0.1",
            port,
            ...(password ? { password } : {}),
            dataDir,
            logFile,
            async stop() {
              unregister();
              if (p.exitCode === null && p.signalCode === null) {
                const gone = new Promise((r) => p.once("exit", r));
                p.kill("SIGTERM");
                const t = setTimeout(() => p.kill("SIGKILL"), 10_000);
                await gone;
                clearTimeout(t);
              }
              rmSync(dataDir, { recursive: true, force: true });
            },
          };
        }
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    p.kill("SIGKILL");
    lastErr = existsSync(logFile) ? readFileSync(logFile, "utf8").slice(-1500) : "(no log)";
    if (!/Address already in use/i.test(lastErr)) break;
  }
  cleanupSync();
  unregister();
  throw new Error(`redis-server did not start:\n${lastErr}`);
}
