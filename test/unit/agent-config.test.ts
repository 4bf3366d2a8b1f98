import { mkdtempSync, writeFileSync, chmodSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, flagName, parseArgs, Settings } from "../../agent/config.js";
import { keyId } from "../../agent/storage/pipeline.js";
import { parseCronJobs } from "../../agent/serve.js";
import { main } from "../../agent/cli.js";
import { checkRestorePaths } from "../../agent/commands/restore.js";

/** Runs `fn` with only `env` of the KDR_ settings set, collecting what the agent writes to stderr. */
async function withAgentEnv(env: Record<string, string>, fn: (err: string[]) => Promise<void>): Promise<void> {
  const err: string[] = [];
  const orig = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((c: string) => (err.push(String(c)), true)) as typeof process.stderr.write;
  const saved = { ...process.env };
  try {
    for (const k of Object.keys(process.env)) if (k.startsWith("KDR_")) delete process.env[k];
    Object.assign(process.env, env);
    await fn(err);
  } finally {
    process.stderr.write = orig;
    process.env = saved;
  }
}

describe("agent settings", () => {
  it("maps every setting to a flag and prefers the flag over the env", () => {
    expect(flagName("targetHost")).toBe("--target-host");
    const { flags, positional } = parseArgs(["backup", "--type", "full", "--json", "--target-host=db1", "--yes"], new Set(["--json", "--yes"]));
    expect(positional).toEqual(["backup"]);
    expect(flags.get("--type")).toBe("full");
    expect(flags.get("--json")).toBe(true);
    const s = new Settings(flags, { KDR_TARGET_HOST: "db0", KDR_SERVICE: "pg-main" });
    expect(s.require("targetHost")).toBe("db1");
    expect(s.service).toBe("pg-main");
  });

  it("names the setting and the fix when one is missing or bad", () => {
    const s = new Settings(new Map(), { KDR_ENGINE: "mysql", KDR_TENANT_ID: "x", KDR_WAL_SWITCH_SECONDS: "soon", KDR_LOCK_MODE: "strict" });
    expect(() => s.require("s3Bucket")).toThrow(/KDR_S3_BUCKET is not set: set the environment variable KDR_S3_BUCKET or pass --s3-bucket/);
    expect(() => s.engine).toThrow(/KDR_ENGINE='mysql' is not an engine: use one of postgres, redis, volume/);
    expect(() => s.tenantId).toThrow(/KDR_TENANT_ID='x' is not a UUID/);
    expect(() => s.walSwitchSeconds).toThrow(/KDR_WAL_SWITCH_SECONDS='soon' is not a whole number/);
    expect(() => s.lockMode).toThrow(/use GOVERNANCE or COMPLIANCE/);
    expect(() => new Settings(new Map(), { KDR_SERVICE: "Bad Name" }).service).toThrow(ConfigError);
  });

  it("reads secrets only from files, with a message naming the file and the Swarm secret", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "kdrtest-agent-unit-"));
    const s = new Settings(new Map(), { KDR_SECRET_DIR: dir });
    expect(() => s.secret("s3AccessKey")).toThrow(new RegExp(`secret kdr-s3-access-key is missing: expected the file ${dir}/kdr-s3-access-key. Attach the Swarm secret 'kdr-s3-access-key'`));
    writeFileSync(path.join(dir, "kdr-s3-access-key"), "  AKIA\n");
    expect(s.secret("s3AccessKey")).toBe("AKIA");
    writeFileSync(path.join(dir, "kdr-catalog-password"), "\n");
    expect(() => s.secret("catalogPassword")).toThrow(/is empty/);
    if (process.getuid?.() !== 0) {
      chmodSync(path.join(dir, "kdr-s3-access-key"), 0);
      expect(() => s.secret("s3AccessKey")).toThrow(/cannot be read/);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it("derives a short, stable key id from the public key only", () => {
    const a = keyId("age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq");
    expect(a).toMatch(/^age-[0-9a-f]{16}$/);
    expect(keyId(" age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq\n")).toBe(a);
    expect(keyId("age1zzzz")).not.toBe(a);
  });

  it("validates cron job lists", () => {
    expect(parseCronJobs('[{"name":"v","schedule":"0 3 * * *","command":["verify"]}]')).toEqual([{ name: "v", schedule: "0 3 * * *", command: ["verify"] }]);
    expect(() => parseCronJobs("{")).toThrow(/KDR_CRON_JOBS is not valid JSON/);
    expect(() => parseCronJobs('[{"schedule":1}]')).toThrow(/needs "schedule"/);
    expect(() => parseCronJobs(undefined)).toThrow(/KDR_CRON_JOBS is not set/);
  });

  it("exits 2 with the setting's name for a bad command line", async () => {
    await withAgentEnv({}, async (err) => {
      expect(await main(["backup", "--type", "weekly"])).toBe(2);
      expect(err.join("")).toMatch(/--type 'weekly' is not a backup type: use full or incremental/);
      expect(await main(["frobnicate"])).toBe(2);
      expect(await main(["backup", "--s3-bukket", "b"])).toBe(2);
      expect(err.join("")).toMatch(/unknown option --s3-bukket: see 'kdr-agent --help'/);
    });
  });
});

describe("agent storage retries", () => {
  it("retries transient storage errors with backoff and gives up on the others at once", async () => {
    const { withRetry } = await import("../../agent/storage/s3.js");
    let calls = 0;
    const flaky = async () => {
      calls++;
      if (calls < 3) throw Object.assign(new Error("SlowDown"), { $metadata: { httpStatusCode: 503 } });
      return "ok";
    };
    const orig = process.stderr.write.bind(process.stderr);
    const err: string[] = [];
    process.stderr.write = ((c: string) => (err.push(String(c)), true)) as typeof process.stderr.write;
    try {
      expect(await withRetry("put x", flaky, 5, 1)).toBe("ok");
      expect(calls).toBe(3);
      expect(err.join("")).toMatch(/storage: put x failed \(Error: SlowDown\); retry 1\/4/);
      let denied = 0;
      await expect(
        withRetry("put y", async () => {
          denied++;
          throw Object.assign(new Error("AccessDenied"), { $metadata: { httpStatusCode: 403 } });
        }, 5, 1),
      ).rejects.toThrow("AccessDenied");
      expect(denied).toBe(1);
    } finally {
      process.stderr.write = orig;
    }
  });
});

describe("agent restore: the command line judged before the catalog is reached", () => {
  const settings = (env: Record<string, string> = {}) => new Settings(new Map(), { KDR_SERVICE: "pg-main", KDR_ENGINE: "postgres", ...env });

  it("--clean-target never empties the root, a directory holding the source, or a WAL directory holding the target", () => {
    const s = settings({ KDR_VOLUME_PATH: "/var/lib/postgresql/data" });
    expect(() => checkRestorePaths(s, { target: "", cleanTarget: false })).toThrow(/restore needs an explicit target: pass --target/);
    expect(() => checkRestorePaths(s, { target: "/restore", cleanTarget: true })).not.toThrow();
    expect(() => checkRestorePaths(s, { target: "/", cleanTarget: true })).toThrow("--clean-target refuses --target /: it would empty the whole filesystem");
    expect(() => checkRestorePaths(s, { target: "/var/lib", cleanTarget: true })).toThrow("--clean-target refuses --target /var/lib: it holds the source /var/lib/postgresql/data");
    expect(() => checkRestorePaths(s, { target: "/restore", walDir: "/", cleanTarget: true })).toThrow("--clean-target refuses --wal-dir /:");
    expect(() => checkRestorePaths(s, { target: "/restore", walDir: "/var/lib/postgresql", cleanTarget: true })).toThrow(/refuses --wal-dir \/var\/lib\/postgresql: it holds the source/);
    expect(() => checkRestorePaths(s, { target: "/restore/data", walDir: "/restore", cleanTarget: true })).toThrow("--clean-target refuses --wal-dir /restore: it holds the target /restore/data");
    expect(() => checkRestorePaths(s, { target: "/restore/data", walDir: "/restore/data-wal", cleanTarget: true })).not.toThrow();
    expect(() => checkRestorePaths(s, { target: "/restore", walDir: "wal", cleanTarget: false })).toThrow("--wal-dir 'wal' must be an absolute path");
  });

  it("a time without its zone, or a backup id that is not one, exits 2 naming the flag and the fix (no catalog set: it is never reached)", async () => {
    await withAgentEnv({ KDR_SERVICE: "pg-main", KDR_ENGINE: "postgres" }, async (err) => {
      expect(await main(["restore", "--target", "/restore", "--time", "2026-11-28T21:04:05"])).toBe(2);
      expect(err.join("")).toContain("--time '2026-11-28T21:04:05' is not an ISO 8601 time with a zone: give e.g. 2026-11-28T21:04:05Z (or 'latest').");
      expect(await main(["restore", "--target", "/restore", "--time", "yesterday"])).toBe(2);
      expect(await main(["restore", "--target", "/restore", "--backup-id", "42"])).toBe(2);
      expect(err.join("")).toContain("--backup-id '42' is not a backup id: give the UUID 'kdr-agent list' shows.");
      expect(await main(["restore", "--target", "/", "--clean-target"])).toBe(2);
      expect(err.join("")).toContain("--clean-target refuses --target /");
      expect(err.join("")).not.toMatch(/catalog|KDR_CATALOG/i);
    });
  });
});
