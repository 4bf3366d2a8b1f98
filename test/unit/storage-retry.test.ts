/**
 * The S3 client's retry policy, against a local HTTP server standing in for an S3 endpoint that
 * restarts: every retry is said on stderr, a server back within the policy's window is used, one
 * that stays away fails the call after the policy's attempts, and an access error is not retried;
 * a store that takes a request and goes silent fails it after the idle timeout (a full Ceph
 * cluster blocks every write so), and a slow, steady download is not cut short.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterEach, describe, expect, it } from "vitest";
import { S3_RETRY, Storage, retryWithin } from "../../agent/storage/s3.js";

const FAST = { attempts: 7, baseMs: 5, capMs: 20 };

/** A server answering each request with the status `answer` gives for the n-th request (1-based). */
async function server(answer: (n: number) => number): Promise<{ url: string; requests: () => number; close: () => Promise<void> }> {
  let n = 0;
  const srv = http.createServer((req, res) => {
    n++;
    const status = answer(n);
    res.writeHead(status, status === 200 ? { ETag: '"abc"', "Content-Length": "0" } : { "Content-Length": "0" });
    res.end();
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, requests: () => n, close: () => new Promise((r) => srv.close(() => r())) };
}

function captureStderr(): { lines: () => string[]; restore: () => void } {
  const orig = process.stderr.write.bind(process.stderr);
  const out: string[] = [];
  process.stderr.write = ((c: string) => (out.push(String(c)), true)) as typeof process.stderr.write;
  return { lines: () => out.join("").split("\n").filter(Boolean), restore: () => (process.stderr.write = orig) };
}

let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
  cleanup = [];
});

describe("S3 retries", () => {
  it("the default policy waits long enough for a server restart: about 25 s over 7 attempts", () => {
    const delays = Array.from({ length: S3_RETRY.attempts - 1 }, (_, i) => Math.min(S3_RETRY.capMs, S3_RETRY.baseMs * 2 ** i));
    expect(delays.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(20_000);
    expect(delays.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(30_000);
  });

  it("the retry budget (s3RetrySeconds) sets the attempts: the default 24 s is the policy above, 1 s one retry, 0 none", () => {
    expect(retryWithin(24)).toEqual(S3_RETRY);
    expect(retryWithin(1).attempts).toBe(2);
    expect(retryWithin(0).attempts).toBe(1);
    expect(retryWithin(600).attempts).toBe(6 + Math.floor((600_000 - 23_500) / 8000) + 1);
  });

  it("a server that answers 503 a few times is used once it is back, and each retry is said", async () => {
    const s = await server((n) => (n <= 3 ? 503 : 200));
    cleanup.push(s.close);
    const err = captureStderr();
    cleanup.push(err.restore);
    const storage = new Storage("b", s.url, "us-east-1", "AK", "SK", FAST);
    await storage.client.send(new HeadObjectCommand({ Bucket: "b", Key: "k" }));
    err.restore();
    expect(s.requests()).toBe(4);
    const said = err.lines().filter((l) => l.startsWith("storage: "));
    expect(said).toHaveLength(3);
    expect(said[0]).toMatch(new RegExp(`^storage: ${s.url} failed \\(HTTP 503.*\\); retry 1/6 after \\d+\\.\\d s$`));
    expect(said[2]).toMatch(/retry 3\/6/);
  });

  it("an endpoint that stays away fails the call after the policy's attempts, naming the error", async () => {
    const s = await server(() => 200);
    await s.close(); // nothing listens there now: every connection is refused
    const err = captureStderr();
    cleanup.push(err.restore);
    const storage = new Storage("b", s.url, "us-east-1", "AK", "SK", FAST);
    await expect(storage.client.send(new HeadObjectCommand({ Bucket: "b", Key: "k" }))).rejects.toThrow(/ECONNREFUSED/);
    err.restore();
    const said = err.lines().filter((l) => l.startsWith("storage: "));
    expect(said).toHaveLength(FAST.attempts - 1);
    expect(said.at(-1)).toMatch(/ECONNREFUSED.*retry 6\/6/);
  });

  it("an access error is not retried", async () => {
    const s = await server(() => 403);
    cleanup.push(s.close);
    const err = captureStderr();
    cleanup.push(err.restore);
    const storage = new Storage("b", s.url, "us-east-1", "AK", "SK", FAST);
    await expect(storage.client.send(new HeadObjectCommand({ Bucket: "b", Key: "k" }))).rejects.toThrow();
    err.restore();
    expect(s.requests()).toBe(1);
    expect(err.lines().filter((l) => l.startsWith("storage: "))).toHaveLength(0);
  });

  it("a store that takes the request and never answers fails it after the idle time, each retry said", async () => {
    const srv = http.createServer(() => undefined); // reads the request, answers nothing
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    cleanup.push(() => new Promise<void>((r) => (srv.closeAllConnections(), srv.close(() => r()))));
    const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    const err = captureStderr();
    cleanup.push(err.restore);
    const storage = new Storage("b", url, "us-east-1", "AK", "SK", { attempts: 2, baseMs: 5, capMs: 5 }, 300);
    const t0 = Date.now();
    await expect(storage.client.send(new HeadObjectCommand({ Bucket: "b", Key: "k" }))).rejects.toThrow(/timed out after 300 ms of inactivity/);
    err.restore();
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(err.lines().filter((l) => l.startsWith("storage: "))).toEqual([expect.stringMatching(/inactivity.*retry 1\/1/)]);
  });

  it("a download that stalls midway fails after the idle time; one that trickles on for longer than it completes", async () => {
    // Each GET gets its headers and a first byte, then a byte every `every` ms for `bytes` bytes,
    // or (every = 0) nothing more.
    const plan = [
      { bytes: 1, every: 0 },
      { bytes: 12, every: 100 },
    ];
    let n = 0;
    const srv = http.createServer((_req, res) => {
      const p = plan[Math.min(n++, plan.length - 1)]!;
      res.writeHead(200, { "Content-Length": String(p.every ? p.bytes : 10) });
      res.write("x");
      if (!p.every) return;
      let sent = 1;
      const t = setInterval(() => {
        res.write("x");
        if (++sent === p.bytes) clearInterval(t), res.end();
      }, p.every);
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    cleanup.push(() => new Promise<void>((r) => (srv.closeAllConnections(), srv.close(() => r()))));
    const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    const storage = new Storage("b", url, "us-east-1", "AK", "SK", { attempts: 1, baseMs: 5, capMs: 5 }, 300);
    const drain = async () => {
      const { body } = await storage.get("k");
      let got = 0;
      await pipeline(body, new Writable({ write: (c: Buffer, _e, cb) => ((got += c.length), cb()) }));
      return got;
    };
    await expect(drain()).rejects.toThrow(/timed out after 300 ms of inactivity/);
    // 1.1 s in all, well past the 300 ms idle time, never 300 ms without a byte.
    await expect(drain()).resolves.toBe(12);
  });
});
