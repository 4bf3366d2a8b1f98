import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { REDIS_CLI_CHATTER } from "../../agent/engines/redis.js";
import { spawnTool } from "../../agent/storage/pipeline.js";

describe("spawnTool's error", () => {
  it("names the tool, its exit code and its stderr, without the lines the tool prints as progress", async () => {
    // What redis-cli --rdb printed when the server went away mid-sync (CI, stop 25).
    const script = `printf 'sending REPLCONF capa eof\\nsending REPLCONF rdb-only 1\\nError reading bulk length while SYNCing\\n' >&2; exit 1`;
    const t = spawnTool("sh", ["-c", script], { stdin: "ignore", chatter: REDIS_CLI_CHATTER });
    await expect(t.exited).rejects.toThrow(/^sh exited 1: Error reading bulk length while SYNCing$/);
    const plain = spawnTool("sh", ["-c", script], { stdin: "ignore" });
    await expect(plain.exited).rejects.toThrow(/^sh exited 1: sending REPLCONF capa eof\nsending REPLCONF rdb-only 1\nError reading bulk length/);
  });

  it("hands progress lines to onChatter as they come, whole even when split across reads, and never keeps them", async () => {
    // pg_basebackup -P -v: its first lines, then a count every second (here 3000, more than the
    // 20000 characters kept), one of them split mid-line across two writes, then its last words.
    const script = [
      `echo 'pg_basebackup: write-ahead log start point: 1/A4000028 on timeline 1' >&2`,
      `i=1; while [ $i -le 3000 ]; do echo " $i/3000 kB (0%), 0/1 tablespace (-.zst      )"; i=$((i+1)); done >&2`,
      `printf ' 300' >&2; sleep 0.2; printf '1/3001 kB (100%%), 1/1 tablespace\n' >&2`,
      `echo 'pg_basebackup: error: connection lost' >&2; exit 1`,
    ].join("; ");
    const seen: string[] = [];
    const t = spawnTool("sh", ["-c", script], { stdin: "ignore", chatter: /^\s*\d+\/\d+ kB/, onChatter: (l) => seen.push(l) });
    await expect(t.exited).rejects.toThrow(/^sh exited 1: pg_basebackup: write-ahead log start point: 1\/A4000028 on timeline 1\npg_basebackup: error: connection lost$/);
    expect(seen.length).toBe(3001);
    expect(seen[2999]).toBe(" 3000/3000 kB (0%), 0/1 tablespace (-.zst      )");
    expect(seen[3000]).toBe(" 3001/3001 kB (100%), 1/1 tablespace");
  });

  it("names a tool that is not installed and says where to install it", async () => {
    const t = spawnTool("kdr-no-such-tool", [], { stdin: "ignore" });
    await expect(t.exited).rejects.toThrow("kdr-no-such-tool is not installed (not found on PATH): install it in the agent image.");
  });
});

describe("one tool's stdout handed to another as its stdin (an OS pipe the agent does not copy)", () => {
  it("passes every byte, in order", async () => {
    const gen = spawnTool("sh", ["-c", "seq 1 200000"], { stdin: "ignore" });
    const sum = spawnTool("sha256sum", [], { stdin: gen.child.stdout! });
    let out = "";
    sum.child.stdout!.on("data", (d: Buffer) => (out += d));
    await Promise.all([gen.exited, sum.exited]);
    const direct = spawnSync("sh", ["-c", "seq 1 200000 | sha256sum"], { encoding: "utf8" }).stdout;
    expect(out).toBe(direct);
  });

  it("a reader that stops early stops the writer, instead of leaving it blocked on a pipe the agent still holds", async () => {
    const writer = spawnTool("yes", [], { stdin: "ignore" });
    const reader = spawnTool("head", ["-c", "1"], { stdin: writer.child.stdout! });
    reader.child.stdout!.resume();
    await reader.exited;
    // Node's child stdio are socket pairs: the writer sees a reset (or SIGPIPE), not a peer that never reads.
    await expect(writer.exited).rejects.toThrow(/^yes (was killed by SIGPIPE|exited 1: yes: standard output: (Broken pipe|Connection reset by peer))/);
  }, 10_000);
});
