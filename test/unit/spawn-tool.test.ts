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

  it("names a tool that is not installed and says where to install it", async () => {
    const t = spawnTool("kdr-no-such-tool", [], { stdin: "ignore" });
    await expect(t.exited).rejects.toThrow("kdr-no-such-tool is not installed (not found on PATH): install it in the agent image.");
  });
});
