/**
 * One run per service at a time: a local lock file (same container/host) plus a PostgreSQL
 * session advisory lock in the catalog (any host). The advisory lock dies with the session, so
 * a killed agent never leaves it behind; a lock file whose process is gone is stale and taken
 * over. The file names its process by container (hostname), pid and start time: the state dir
 * is a volume that outlives the container, and a sidecar's new task has the same pids as the
 * one Swarm replaced (its serve is pid 1 in both), so a pid alone would make a run the old task
 * was killed in look held to every other process there, until the new serve's own next run.
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import type pg from "pg";

export class LockBusyError extends Error {}

/**
 * Locks held by this process: advisory locks are re-entrant within one session and the lock
 * file names our own pid, so two jobs of one serve process need this to exclude each other.
 */
const heldHere = new Set<string>();

/** Whether a process with this pid exists (EPERM: it does, owned by another user). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** A process's start time in clock ticks since boot (/proc/<pid>/stat field 22), if it runs. */
export function startTicks(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** What a lock file says of its holder: "<pid> <hostname> <start ticks>". */
export function lockOwner(): string {
  return `${process.pid} ${hostname()} ${startTicks(process.pid) ?? "-"}\n`;
}

/**
 * Whether the process a lock file names still runs here. A file from another container or host
 * (or from an agent that wrote the pid alone) is not judged here: the advisory lock is.
 */
export function holderAlive(content: string): boolean {
  const [pidText, host, start] = content.trim().split(/\s+/);
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || host !== hostname() || !alive(pid)) return false;
  return start === undefined || start === "-" || startTicks(pid) === start;
}

function tryLocalLock(file: string): boolean {
  mkdirSync(path.dirname(file), { recursive: true });
  for (let i = 0; i < 2; i++) {
    try {
      const fd = openSync(file, "wx");
      writeSync(fd, lockOwner());
      closeSync(fd);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      if (holderAlive(readFileSync(file, "utf8"))) return false;
      rmSync(file, { force: true });
    }
  }
  return false;
}

export interface HeldLock {
  release(): Promise<void>;
}

/**
 * Takes both locks for `name` (e.g. "backup:pg-main"). With waitSeconds = 0 a busy lock is
 * refused at once; otherwise it polls until the deadline.
 */
export async function acquireServiceLock(client: pg.ClientBase, stateDir: string, name: string, waitSeconds = 0): Promise<HeldLock> {
  const file = path.join(stateDir, "locks", name.replace(/[^a-zA-Z0-9._-]/g, "_") + ".lock");
  const deadline = Date.now() + waitSeconds * 1000;
  for (;;) {
    // Claimed synchronously, before the first await: a second job of this process that asks in
    // the same tick must see it taken. (The lock file names our own pid and the advisory lock is
    // re-entrant within one session, so neither of those can tell two jobs of one process apart.)
    if (!heldHere.has(name)) {
      heldHere.add(name);
      let ok = false;
      try {
        if (tryLocalLock(file)) {
          const r = await client.query<{ ok: boolean }>("SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok", [`kdr:${name}`]);
          ok = r.rows[0]!.ok;
          if (!ok) rmSync(file, { force: true });
        }
      } finally {
        if (!ok) heldHere.delete(name);
      }
      if (ok) {
        let released = false;
        return {
          async release() {
            if (released) return;
            released = true;
            // The in-process claim goes last, so a job waiting in this process cannot take the
            // lock file before it is removed here.
            rmSync(file, { force: true });
            await client.query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [`kdr:${name}`]).catch(() => undefined);
            heldHere.delete(name);
          },
        };
      }
    }
    if (Date.now() >= deadline) {
      throw new LockBusyError(
        `another ${name.split(":")[0]} run for '${name.split(":").slice(1).join(":")}' is in progress (lock kdr:${name}${waitSeconds ? `, waited ${waitSeconds} s` : ""}): runs for one service never interleave. Wait for it to finish, or pass --wait <seconds>.`,
      );
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}
