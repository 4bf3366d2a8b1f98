/**
 * How a restore stages WAL (agent/engines/postgres.ts stageWal): each segment downloaded once,
 * decrypted and decompressed by the real age and zstd, its SHA-256s checked as it streams, four
 * at a time. The object store is a stand-in here (objects in memory, with the failures a real one
 * gives: a missing key, a connection reset partway), so that which segment fails, and how, is
 * exact; the same staging against RGW runs in agent-faults.test.ts and every PostgreSQL restore.
 */
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stageWal, type StoredRef } from "../../agent/engines/postgres.js";
import { IntegrityError } from "../../agent/storage/pipeline.js";
import type { Storage } from "../../agent/storage/s3.js";

let dir: string;
let identity: string;
const raws: Buffer[] = [];
const stored: Buffer[] = [];
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const name = (i: number) => `0000000100000000000000${i.toString(16).toUpperCase().padStart(2, "0")}`;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "kdr-walstage-"));
  identity = path.join(dir, "identity");
  expect(spawnSync("age-keygen", ["-o", identity]).status).toBe(0);
  const recipient = spawnSync("age-keygen", ["-y", identity], { encoding: "utf8" }).stdout.trim();
  for (let i = 0; i < 10; i++) {
    const raw = Buffer.concat([randomBytes(64 * 1024), Buffer.alloc(192 * 1024, i)]);
    const z = spawnSync("zstd", ["-q", "-c", "-3"], { input: raw, maxBuffer: 1 << 24 });
    const a = spawnSync("age", ["-e", "-r", recipient], { input: z.stdout, maxBuffer: 1 << 24 });
    expect(a.status).toBe(0);
    raws.push(raw);
    stored.push(a.stdout);
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Fault = "missing" | "reset" | "flipped";
/** An object store holding the ten segments, with a fault per key. */
function store(faults: Record<number, Fault>): Storage {
  return {
    async get(key: string) {
      const i = Number(key.split("/").pop());
      const f = faults[i];
      await new Promise((r) => setTimeout(r, 5 + ((i * 7) % 13)));
      if (f === "missing") throw new Error(`s3 GET ${key}: NoSuchKey (HTTP 404)`);
      let body = stored[i]!;
      if (f === "flipped") {
        body = Buffer.from(body);
        body[body.length >> 1]! ^= 0xff;
      }
      if (f === "reset") {
        // The connection drops halfway through the body.
        const half = body.subarray(0, body.length >> 1);
        return { body: new Readable({ read() { this.push(half); this.destroy(Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" })); } }) };
      }
      return { body: Readable.from([body]) };
    },
  } as unknown as Storage;
}

const refs = (): StoredRef[] => stored.map((b, i) => ({ key: `wal/${i}`, sha256: sha(b), rawSha256: sha(raws[i]!), rawBytes: raws[i]!.length, storedBytes: b.length, name: name(i) }));
const isDamage = (e: unknown) => e instanceof IntegrityError || /NoSuchKey/.test((e as Error).message);

async function stage(label: string, faults: Record<number, Fault>) {
  const out = path.join(dir, label);
  const r = await stageWal({ storage: store(faults), identityFile: identity, wal: refs(), dir: out, isDamage });
  return { r, files: readdirSync(out).sort() };
}

describe("staging WAL for a restore", () => {
  it("stages every segment whole, byte for byte", async () => {
    const { r, files } = await stage("all", {});
    expect(r).toEqual({ staged: 10, damaged: undefined });
    expect(files).toEqual(refs().map((x) => x.name));
    for (const [i, f] of files.entries()) expect(sha(readFileSync(path.join(dir, "all", f)))).toBe(sha(raws[i]!));
  });

  it("a missing segment ends the chain there: the segments fetched ahead of it are removed", async () => {
    const { r, files } = await stage("missing", { 3: "missing" });
    expect(r.staged).toBe(3);
    expect(r.damaged?.index).toBe(3);
    expect(files).toEqual([name(0), name(1), name(2)]);
  });

  it("a damaged segment (a flipped byte) is a checksum error, and ends the chain there", async () => {
    const { r, files } = await stage("flipped", { 1: "flipped" });
    expect(r.damaged?.index).toBe(1);
    expect(r.damaged?.error).toBeInstanceOf(IntegrityError);
    expect(r.damaged?.error.message).toMatch(/SHA-256 of s3:\/\/\S+ (\(version \S+\) )?is [0-9a-f]{64}, the catalog recorded/);
    expect(files).toEqual([name(0)]);
  });

  it("a connection reset fails the staging (it says nothing of the backup), and does not hang", async () => {
    await expect(stage("reset", { 2: "reset" })).rejects.toThrow(/ECONNRESET/);
  }, 20_000);

  it("a reset in a segment past a damaged one is WAL that is not replayed: the chain still ends at the damage", async () => {
    const { r, files } = await stage("both", { 2: "missing", 4: "reset" });
    expect(r.damaged?.index).toBe(2);
    expect(files).toEqual([name(0), name(1)]);
  });
});
