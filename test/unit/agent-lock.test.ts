/**
 * Who holds a service's lock file (agent/lock.ts): the state directory is a volume that outlives
 * a sidecar's task, so a file is judged by the container, pid and start time it names, never by
 * a pid alone (the new task's serve is pid 1, as the killed one's was).
 */
import { spawn } from "node:child_process";
import { hostname } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { holderAlive, lockOwner, startTicks } from "../../agent/lock.js";

let child: ReturnType<typeof spawn>;

beforeAll(() => {
  child = spawn("sleep", ["60"], { stdio: "ignore" });
});

afterAll(() => {
  child.kill();
});

describe("a lock file's holder", () => {
  it("names this process by pid, hostname and start time", () => {
    expect(lockOwner()).toBe(`${process.pid} ${hostname()} ${startTicks(process.pid)}\n`);
    expect(startTicks(process.pid)).toMatch(/^\d+$/);
  });

  it("is alive when that process runs here, with that start time", () => {
    expect(holderAlive(`${child.pid} ${hostname()} ${startTicks(child.pid!)}\n`)).toBe(true);
  });

  it("is not when the pid now belongs to a process started at another time (a new container's pid 1, a reused pid)", () => {
    expect(holderAlive(`${child.pid} ${hostname()} ${Number(startTicks(child.pid!)) - 1}\n`)).toBe(false);
  });

  it("is not judged here when another container or host wrote it, or an agent that wrote the pid alone: the catalog's advisory lock decides", () => {
    expect(holderAlive(`${child.pid} not-${hostname()} ${startTicks(child.pid!)}\n`)).toBe(false);
    expect(holderAlive(`${child.pid}\n`)).toBe(false);
  });

  it("is not when the process is gone, the file is this process's own, or it names no pid", () => {
    const gone = spawn("true");
    return new Promise<void>((resolve) =>
      gone.once("close", () => {
        expect(holderAlive(`${gone.pid} ${hostname()} 1\n`)).toBe(false);
        expect(holderAlive(lockOwner())).toBe(false);
        expect(holderAlive("")).toBe(false);
        expect(holderAlive("garbage here 1")).toBe(false);
        resolve();
      }),
    );
  });
});
