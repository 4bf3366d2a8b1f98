/**
 * Throwaway PostgreSQL 15 servers for tests, started from the host's binaries in a fresh temp
 * dir on a free loopback port. Configured like a primary the agent can back up: scram password
 * auth, wal_level=replica and replication connections allowed, so pg_basebackup and
 * pg_receivewal work against it.
 *
 * PostgreSQL refuses to run as root, so when the tests run as root every server command goes
 * through `runuser -u postgres` and the temp dir is owned by that OS user.
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chownSync, mkdtempSync, rmSync, writeFileSync, appendFileSync, readFileSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

export const PG_BIN = process.env.KDR_PG_BIN ?? "/usr/lib/postgresql/15/bin";

export interface TmpPostgresOptions {
  /**
   * Another address to listen on besides 127.0.0.1 (e.g. the docker_gwbridge gateway, so Swarm
   * containers can connect). When set, password (scram) connections, replication included, are
   * accepted from any address, because container source addresses are not known in advance.
   */
  listen?: string;
  /** Extra postgresql.conf settings, e.g. `{ archive_timeout: "10s" }`. */
  settings?: Record<string, string>;
  /** A streaming standby of this server (pg_basebackup -R), with its superuser and password. */
  standbyOf?: TmpPostgres;
}

export interface TmpPostgres {
  host: "127.0.0.1";
  port: number;
  user: "postgres";
  password: string;
  /** The cluster's data directory (PGDATA). */
  dataDir: string;
  /** Server log file. */
  logFile: string;
  /** postgres://postgres:<password>@127.0.0.1:<port>/postgres */
  url: string;
  /** URL of another database on the same server. */
  urlFor(database: string): string;
  /** Stops the server (fast shutdown: clients are disconnected) and keeps its data, for up(). */
  down(): Promise<void>;
  /** Starts a server stopped by down() again, on the same port. */
  up(): Promise<void>;
  /** Stops the server (fast shutdown) and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

const isRoot = () => typeof process.getuid === "function" && process.getuid() === 0;

/** argv that runs `cmd` as the postgres OS user (directly when we are not root). */
function asPostgres(cmd: string, args: string[]): [string, string[]] {
  return isRoot() ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
}

function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<void> {
  const [c, a] = asPostgres(cmd, args);
  return new Promise((resolve, reject) => {
    const p = spawn(c, a, { stdio: ["ignore", "pipe", "pipe"], env: env ?? process.env });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    p.on("error", reject);
    p.on("close", (code) =>
      code === 0 ? resolve() : reject(new Error(`${path.basename(cmd)} ${a.join(" ")} exited ${code}: ${out.trim()}`)),
    );
  });
}

/** A port the kernel reports free on loopback right now. */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, host, () => {
      const addr = s.address();
      s.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

/**
 * Cleanups that must run however the test process ends. A server started with pg_ctl (or a
 * redis-server child) outlives a process killed by SIGTERM/SIGINT, so besides 'exit' the
 * signals run them too, then the signal takes its default course unless someone else handles it.
 */
const pendingCleanups = new Set<() => void>();
let hooksInstalled = false;
function runCleanups(): void {
  for (const fn of [...pendingCleanups]) {
    pendingCleanups.delete(fn);
    try {
      fn();
    } catch {
      // best effort: the process is going away
    }
  }
}
/** Registers a synchronous cleanup; returns a function that unregisters it. */
export function onProcessEnd(fn: () => void): () => void {
  if (!hooksInstalled) {
    hooksInstalled = true;
    process.once("exit", runCleanups);
    for (const sig of ["SIGTERM", "SIGINT"] as const) {
      const handler = () => {
        runCleanups();
        process.removeListener(sig, handler);
        if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
      };
      process.on(sig, handler);
    }
  }
  pendingCleanups.add(fn);
  return () => pendingCleanups.delete(fn);
}

export async function startTmpPostgres(opts: TmpPostgresOptions = {}): Promise<TmpPostgres> {
  const root = mkdtempSync(path.join(tmpdir(), "kdrtest-pg-"));
  const dataDir = path.join(root, "data");
  const logFile = path.join(root, "postgres.log");
  const pwFile = path.join(root, "pw");
  const password = opts.standbyOf?.password ?? randomBytes(18).toString("hex");
  let pgUid: number | undefined;
  let pgGid: number | undefined;
  if (isRoot()) {
    const id = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
    const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
    if (id.status !== 0) throw new Error("Running as root but there is no 'postgres' OS user: install postgresql-15 (apt-get install postgresql-15).");
    pgUid = Number(id.stdout.trim());
    pgGid = Number(gid.stdout.trim());
    chownSync(root, pgUid, pgGid);
  }
  writeFileSync(pwFile, password + "\n", { mode: 0o600 });
  if (pgUid !== undefined) chownSync(pwFile, pgUid, pgGid!);

  let stopped = false;
  const cleanupSync = () => {
    if (stopped) return;
    stopped = true;
    if (existsSync(path.join(dataDir, "postmaster.pid"))) {
      const [c, a] = asPostgres(path.join(PG_BIN, "pg_ctl"), ["stop", "-D", dataDir, "-m", "immediate", "-w"]);
      spawnSync(c, a, { stdio: "ignore" });
    }
    rmSync(root, { recursive: true, force: true });
  };
  // A test process that dies without calling stop() must not leave a server behind.
  const unregister = onProcessEnd(cleanupSync);

  try {
    if (opts.standbyOf) {
      const src = opts.standbyOf;
      await run(path.join(PG_BIN, "pg_basebackup"), ["-D", dataDir, "-R", "-X", "stream", "-c", "fast", "-h", src.host, "-p", String(src.port), "-U", src.user, "--no-sync"], { ...process.env, PGPASSWORD: src.password });
    } else await run(path.join(PG_BIN, "initdb"), [
      "-D", dataDir, "-U", "postgres", `--pwfile=${pwFile}`,
      "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
      "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions",
      // A throwaway cluster need not survive a power cut; skipping the fsync of initdb saves seconds.
      "--no-sync",
    ]);
    rmSync(pwFile, { force: true });

    const anyHost = opts.listen !== undefined;
    const hba = [
      "# written by test/support/tmp-postgres.ts",
      "local   all          all                  scram-sha-256",
      "host    all          all  127.0.0.1/32    scram-sha-256",
      "host    replication  all  127.0.0.1/32    scram-sha-256",
      ...(anyHost
        ? ["host    all          all  0.0.0.0/0       scram-sha-256", "host    replication  all  0.0.0.0/0       scram-sha-256"]
        : []),
    ];
    writeFileSync(path.join(dataDir, "pg_hba.conf"), hba.join("\n") + "\n");

    let lastErr: unknown;
    let standbyConf: string | undefined;
    // The free port can be taken between probing and binding; a few attempts cover that race.
    for (let attempt = 0; attempt < 4; attempt++) {
      const port = await freePort();
      const settings: Record<string, string> = {
        listen_addresses: `'${["127.0.0.1", ...(opts.listen ? [opts.listen] : [])].join(",")}'`,
        port: String(port),
        unix_socket_directories: `'${root}'`,
        password_encryption: "'scram-sha-256'",
        wal_level: "replica",
        max_wal_senders: "10",
        max_replication_slots: "10",
        shared_buffers: "32MB",
        ...Object.fromEntries(Object.entries(opts.settings ?? {})),
      };
      const confPath = path.join(dataDir, "postgresql.auto.conf");
      // A standby keeps what pg_basebackup -R wrote there (primary_conninfo).
      standbyConf ??= opts.standbyOf ? readFileSync(confPath, "utf8") : "";
      writeFileSync(confPath, standbyConf + Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join("\n") + "\n");
      if (pgUid !== undefined) {
        chownSync(confPath, pgUid, pgGid!);
        chownSync(path.join(dataDir, "pg_hba.conf"), pgUid, pgGid!);
      }
      try {
        await run(path.join(PG_BIN, "pg_ctl"), ["start", "-D", dataDir, "-l", logFile, "-w", "-t", "60"]);
        const url = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
        return {
          host: "127.0.0.1",
          port,
          user: "postgres",
          password,
          dataDir,
          logFile,
          url,
          urlFor: (db: string) => `postgres://postgres:${password}@127.0.0.1:${port}/${encodeURIComponent(db)}`,
          down: () => run(path.join(PG_BIN, "pg_ctl"), ["stop", "-D", dataDir, "-m", "fast", "-w", "-t", "60"]),
          up: () => run(path.join(PG_BIN, "pg_ctl"), ["start", "-D", dataDir, "-l", logFile, "-w", "-t", "60"]),
          async stop() {
            if (stopped) return;
            stopped = true;
            unregister();
            try {
              if (existsSync(path.join(dataDir, "postmaster.pid"))) {
                await run(path.join(PG_BIN, "pg_ctl"), ["stop", "-D", dataDir, "-m", "fast", "-w", "-t", "60"]);
              }
            } finally {
              rmSync(root, { recursive: true, force: true });
            }
          },
        };
      } catch (e) {
        lastErr = e;
        const log = existsSync(logFile) ? readFileSync(logFile, "utf8") : "";
        if (!/could not bind|Address already in use/i.test(log)) break;
        appendFileSync(logFile, `\n-- retrying on another port --\n`);
      }
    }
    const log = existsSync(logFile) ? readFileSync(logFile, "utf8").slice(-2000) : "";
    throw new Error(`PostgreSQL did not start: ${String(lastErr)}\n${log}`);
  } catch (e) {
    cleanupSync();
    unregister();
    throw e;
  }
}
