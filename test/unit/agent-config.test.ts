import { mkdtempSync, writeFileSync, chmodSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, flagName, parseArgs, Settings } from "../../agent/config.js";
import { keyId } from "../../agent/storage/pipeline.js";
import { parseCronJobs } from "../../agent/serve.js";
import { main } from "../../agent/cli.js";

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
    const err: string[] = [];
    const orig = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((c: string) => (err.push(String(c)), true)) as typeof process.stderr.write;
    const saved = { ...process.env };
    try {
      for (const k of Object.keys(process.env)) if (k.startsWith("KDR_")) delete process.env[k];
      expect(await main(["backup", "--type", "weekly"])).toBe(2);
      expect(err.join("")).toMatch(/--type 'weekly' is not a backup type: use full or incremental/);
      expect(await main(["frobnicate"])).toBe(2);
      expect(await main(["backup", "--s3-bukket", "b"])).toBe(2);
      expect(err.join("")).toMatch(/unknown option --s3-bukket: see 'kdr-agent --help'/);
    } finally {
      process.stderr.write = orig;
      process.env = saved;
    }
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
