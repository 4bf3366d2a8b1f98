/**
 * Redis: `redis-cli --rdb -` asks the server for the same RDB a replica would get (a consistent
 * fork-time snapshot) and writes it to stdout, which we stream straight into zstd/age/S3.
 */
import { createWriteStream, existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import { Transform } from "node:stream";
import type { Settings } from "../config.js";
import { openAndRestore, sealAndUpload, spawnTool } from "../storage/pipeline.js";
import { Progress, log } from "../storage/progress.js";
import type { Storage } from "../storage/s3.js";
import type { StoredRef } from "./postgres.js";
import { toolVersion } from "./tools.js";
import type { BackupContext, EngineResult } from "./types.js";

/** redis-cli's connection arguments for the target, or for `host` (e.g. a standby's primary) with the same port and credentials. */
export function redisArgs(s: Settings, host?: string, port?: number): { args: string[]; env: NodeJS.ProcessEnv } {
  const args = ["-h", host ?? s.require("targetHost"), "-p", String(port ?? s.int("targetPort", 6379))];
  const user = s.get("targetUser");
  if (user && user !== "default") args.push("--user", user);
  const env: NodeJS.ProcessEnv = { ...process.env };
  // redis-cli reads the password from REDISCLI_AUTH, keeping it out of argv.
  if (existsSync(s.secretPath("targetPassword"))) env.REDISCLI_AUTH = s.secret("targetPassword");
  return { args, env };
}

/** What redis-cli --rdb prints on stderr while it works: progress, never the error. */
export const REDIS_CLI_CHATTER = /^(sending REPLCONF |SYNC sent to master|Transfer finished with success)/;

/**
 * One RDB snapshot. An RDB is always whole, so a run on the incremental schedule takes the same
 * snapshot; it only lives under incremental/ with the incremental retention (a critical Redis
 * snapshots every few minutes and keeps those for days, and its daily fulls for weeks).
 */
export async function backup(ctx: BackupContext, type: "full" | "incremental"): Promise<EngineResult> {
  const { args, env } = redisArgs(ctx.settings);
  // The server forks its snapshot some time after the request (a diskless replica sync waits
  // repl-diskless-sync-delay, 5 s by default and 0 in our image, for other replicas) and sends the first byte only
  // after the fork. So the snapshot holds everything acknowledged before the request and nothing
  // written after the first byte: those two times are the recovery point's bounds.
  const requestedAt = new Date();
  let firstByteAt: Date | undefined;
  const cli = spawnTool("redis-cli", [...args, "--no-auth-warning", "--rdb", "-"], { env, stdin: "ignore", chatter: REDIS_CLI_CHATTER });
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      firstByteAt ??= new Date();
      done(null, chunk);
    },
  });
  cli.child.stdout!.on("error", (e) => tap.destroy(e));
  cli.child.stdout!.pipe(tap);
  const rdb = await sealAndUpload({
    storage: ctx.storage,
    key: `${ctx.prefix}dump.rdb.zst.age`,
    name: "dump.rdb",
    source: tap,
    recipientFile: ctx.recipientFile,
    lock: ctx.lock(type),
    producers: [cli.exited],
    progress: new Progress(`redis rdb ${ctx.service}`),
  });
  if (rdb.rawBytes < 9 || !firstByteAt) throw new Error(`redis-cli --rdb returned ${rdb.rawBytes} bytes, not an RDB file: ${cli.stderr().trim()}`);
  return {
    artifacts: [rdb],
    tool: "redis-cli --rdb",
    toolVersion: toolVersion("redis-cli"),
    recoveryPointStart: requestedAt,
    recoveryPointEnd: firstByteAt,
    details: {
      meaning: `consistent RDB snapshot forked between the request (recovery point start) and the first byte received (end)${type === "incremental" ? "; whole and self-contained, taken on the incremental schedule" : ""}`,
    },
  };
}

/**
 * Writes the RDB as `<target>/dump.rdb`; start redis-server with `dir <target>` on it.
 * `verifiedAt`: when a verify ran redis-check-rdb on this RDB and it passed. The bytes written are
 * then those bytes (their SHA-256 is checked against the one recorded at backup as they are
 * written), so they are not parsed a second time: that parse took as long as Redis's own load.
 */
export async function restore(o: { storage: Storage; identityFile: string; rdb: StoredRef; target: string; overwrite: boolean; verifiedAt?: Date | null }): Promise<string> {
  mkdirSync(o.target, { recursive: true });
  const file = path.join(o.target, "dump.rdb");
  if (existsSync(file) && !o.overwrite) {
    throw new Error(`${file} already exists: restore into an empty directory, or pass --force-overwrite-source --yes to replace it.`);
  }
  const tmp = file + ".kdr-partial";
  try {
    await openAndRestore({ storage: o.storage, ref: o.rdb, identityFile: o.identityFile, label: "dump.rdb", sink: createWriteStream(tmp) });
    if (o.verifiedAt && o.rdb.rawSha256) {
      log(`redis restore: dump.rdb has the SHA-256 of the RDB that passed redis-check-rdb at its verify (${o.verifiedAt.toISOString()}); not parsed again`);
    } else {
      const check = spawnTool("redis-check-rdb", [tmp], { stdin: "ignore" });
      check.child.stdout!.resume();
      await check.exited;
    }
    // Renamed only when complete and checked, so Redis never loads a half-written file.
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  log(`redis restore: ${file} written; start redis-server with 'dir ${o.target}' to serve it`);
  return file;
}

/** The RDB read once (its stored SHA-256, age and zstd checked as it streams), then redis-check-rdb over it. */
export async function verify(o: { storage: Storage; identityFile: string; rdb: StoredRef; scratch: string }): Promise<string[]> {
  mkdirSync(o.scratch, { recursive: true });
  const tmp = path.join(o.scratch, `verify-${process.pid}.rdb`);
  try {
    await openAndRestore({ storage: o.storage, ref: o.rdb, identityFile: o.identityFile, label: "dump.rdb", sink: createWriteStream(tmp) });
    const check = spawnTool("redis-check-rdb", [tmp], { stdin: "ignore" });
    let out = "";
    check.child.stdout!.on("data", (d: Buffer) => (out += d));
    await check.exited;
    return [`dump.rdb: redis-check-rdb ${/RDB looks OK/.test(out) ? "RDB looks OK" : "passed"}`];
  } finally {
    rmSync(tmp, { force: true });
  }
}
