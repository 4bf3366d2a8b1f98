/**
 * Replication for S3 targets without native bucket replication: every new object version in
 * the primary bucket is copied (streamed) to the replica bucket with the same key and the same
 * object-lock mode and retain-until date. What was copied is remembered in the state dir by
 * source version id, so a pass only moves new versions.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Gauge } from "prom-client";
import type { Readable } from "node:stream";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { AGENT_ENV } from "../contract/index.js";
import { ConfigError, type Settings } from "./config.js";
import { registry } from "./metrics.js";
import { httpServer } from "./serve.js";
import { log } from "./storage/progress.js";
import { Storage, withRetry } from "./storage/s3.js";

const backlog = new Gauge({ name: "kdr_replication_backlog_objects", help: "Object versions not yet copied to the replica", registers: [registry] });
const lag = new Gauge({ name: "kdr_replication_lag_seconds", help: "Age of the oldest object version not yet copied", registers: [registry] });
const copied = new Gauge({ name: "kdr_replication_last_pass_copied", help: "Versions copied by the last pass", registers: [registry] });

export async function replicateOnce(s: Settings, src: Storage, dst: Storage): Promise<{ copied: number; skipped: number }> {
  const stateFile = path.join(s.stateDir, `replicate-${src.bucket}-to-${dst.bucket}.json`);
  mkdirSync(path.dirname(stateFile), { recursive: true });
  const done = new Set<string>(existsSync(stateFile) ? (JSON.parse(readFileSync(stateFile, "utf8")) as string[]) : []);
  const pending: { key: string; versionId?: string; lastModified?: Date }[] = [];
  for await (const v of src.listVersions("")) if (v.versionId && !done.has(v.versionId)) pending.push(v);
  // Oldest first, so the replica's newest version of a key is the primary's newest.
  pending.sort((a, b) => (a.lastModified?.getTime() ?? 0) - (b.lastModified?.getTime() ?? 0));
  backlog.set(pending.length);
  lag.set(pending.length ? (Date.now() - (pending[0]!.lastModified?.getTime() ?? Date.now())) / 1000 : 0);
  let n = 0;
  for (const v of pending) {
    const got = await withRetry(`get ${v.key}`, () => src.client.send(new GetObjectCommand({ Bucket: src.bucket, Key: v.key, VersionId: v.versionId })));
    const lock = got.ObjectLockMode && got.ObjectLockRetainUntilDate ? { mode: got.ObjectLockMode, retainUntil: got.ObjectLockRetainUntilDate } : undefined;
    await dst.upload(v.key, got.Body as Readable, lock, got.ContentType);
    done.add(v.versionId!);
    n++;
    writeFileSync(stateFile + ".tmp", JSON.stringify([...done]));
    renameSync(stateFile + ".tmp", stateFile);
  }
  backlog.set(0);
  lag.set(0);
  copied.set(n);
  return { copied: n, skipped: done.size - n };
}

export async function replicate(s: Settings, once: boolean): Promise<void> {
  const src = Storage.fromSettings(s);
  const endpoint = s.require("replicaEndpoint");
  const dst = new Storage(s.require("replicaBucket"), endpoint, s.get("replicaRegion") ?? "us-east-1", s.secret("replicaAccessKey"), s.secret("replicaSecretKey"));
  if (src.bucket === dst.bucket && endpoint === s.get("s3Endpoint")) throw new ConfigError(`${AGENT_ENV.replicaBucket} is the source bucket: give the DR bucket.`);
  const interval = s.int("replicationIntervalSeconds", 30);
  let lastOk = Date.now();
  let lastError: string | undefined;
  const srv = once
    ? undefined
    : httpServer(s.metricsPort, () => ({ ok: Date.now() - lastOk < Math.max(300, interval * 5) * 1000, detail: { source: src.bucket, replica: dst.bucket, lastError } }));
  for (;;) {
    try {
      const r = await replicateOnce(s, src, dst);
      lastOk = Date.now();
      lastError = undefined;
      log(`replicate ${src.bucket} -> ${dst.bucket}: copied ${r.copied} new version(s)`);
    } catch (e) {
      if (once) throw e;
      lastError = (e as Error).message;
      log(`replicate: ${lastError}`);
    }
    if (once) {
      srv?.close();
      return;
    }
    await new Promise((r) => setTimeout(r, interval * 1000));
  }
}
