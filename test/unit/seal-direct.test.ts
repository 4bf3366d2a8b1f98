/**
 * sealAndUpload's `direct` mode (the PostgreSQL base): a child's stdout reaches zstd through dd,
 * the agent never relaying the raw bytes. Real dd, zstd and age; the object store is a collector
 * (the S3 side of the pipeline is the same as the relayed mode's, tested against RGW).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ConfigError } from "../../agent/config.js";
import { IntegrityError, openIntoDir, sealAndUpload, spawnTool } from "../../agent/storage/pipeline.js";
import { Progress } from "../../agent/storage/progress.js";
import type { Storage } from "../../agent/storage/s3.js";

let dir: string;
let recipient: string;
let identity: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kdrtest-seal-"));
  identity = join(dir, "identity");
  spawnSync("age-keygen", ["-o", identity], { stdio: "ignore" });
  recipient = join(dir, "recipient");
  writeFileSync(recipient, spawnSync("age-keygen", ["-y", identity], { encoding: "utf8" }).stdout);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Collects what would be uploaded. */
function collector() {
  const chunks: Buffer[] = [];
  const storage = {
    bucket: "b",
    upload: async (key: string, body: Readable) => {
      for await (const c of body) chunks.push(c as Buffer);
      return { bucket: "b", key };
    },
  } as unknown as Storage;
  return { storage, bytes: () => Buffer.concat(chunks) };
}

const open = (sealed: Buffer): Buffer => {
  const plain = spawnSync("sh", ["-c", `age -d -i ${identity} | zstd -q -d -c`], { input: sealed, maxBuffer: 1 << 28 });
  expect(plain.status, plain.stderr?.toString()).toBe(0);
  return plain.stdout;
};

describe("sealAndUpload, direct (a child's stdout into zstd through dd)", () => {
  it("stores every byte, in order, counts them exactly as dd copied them, and reports progress on the way", async () => {
    // 40 MB that take a few seconds to produce, so dd reports progress before its end.
    const script = "i=0; while [ $i -lt 8 ]; do head -c 5000000 /dev/urandom | od -An -tx1; sleep 0.4; i=$((i+1)); done";
    const producer = spawnTool("sh", ["-c", script], { stdin: "ignore" });
    const c = collector();
    const lines: string[] = [];
    const spy = vi.spyOn(process.stderr, "write").mockImplementation((s: string | Uint8Array) => (lines.push(String(s)), true));
    let sealed;
    try {
      sealed = await sealAndUpload({ storage: c.storage, key: "k", name: "base.tar", source: producer.child.stdout!, recipientFile: recipient, producers: [producer.exited], progress: new Progress("base", undefined, 500), direct: true });
    } finally {
      spy.mockRestore();
    }
    const plain = open(c.bytes());
    expect(sealed.rawBytes).toBe(plain.length);
    expect(plain.length).toBeGreaterThan(100_000_000);
    expect(sealed.rawSha256).toBeUndefined();
    expect(sealed.storedBytes).toBe(c.bytes().length);
    expect(sealed.sha256).toBe(spawnSync("sha256sum", { input: c.bytes() }).stdout.toString().split(" ")[0]);
    // Progress lines came from dd's counts, below the total; nothing of dd's own output leaked.
    const progress = lines.filter((l) => l.startsWith("base: "));
    expect(progress.length).toBeGreaterThan(0);
    expect(lines.join("")).not.toMatch(/records (in|out)|bytes .* copied/);
  }, 60_000);

  it("an empty source is an empty artifact of 0 bytes, not an error", async () => {
    const producer = spawnTool("true", [], { stdin: "ignore" });
    const c = collector();
    const sealed = await sealAndUpload({ storage: c.storage, key: "k", name: "empty", source: producer.child.stdout!, recipientFile: recipient, producers: [producer.exited], direct: true });
    expect(sealed.rawBytes).toBe(0);
    expect(open(c.bytes()).length).toBe(0);
  });

  it("a producer that fails midway fails the seal, naming the producer and what it said", async () => {
    const producer = spawnTool("sh", ["-c", "head -c 3000000 /dev/urandom; echo 'pg_basebackup: error: connection lost' >&2; exit 1"], { stdin: "ignore" });
    const c = collector();
    await expect(
      sealAndUpload({ storage: c.storage, key: "k", name: "base.tar", source: producer.child.stdout!, recipientFile: recipient, producers: [producer.exited], direct: true }),
    ).rejects.toThrow(/^sh exited 1: pg_basebackup: error: connection lost$/);
  });

  it("an upload that fails kills the tools and the producer sees its output closed (nothing is left running)", async () => {
    const producer = spawnTool("yes", [], { stdin: "ignore" });
    const storage = {
      bucket: "b",
      upload: async (_key: string, body: Readable) => {
        for await (const _ of body) throw new Error("S3 said no");
        return { bucket: "b", key: "k" };
      },
    } as unknown as Storage;
    await expect(sealAndUpload({ storage, key: "k", name: "x", source: producer.child.stdout!, recipientFile: recipient, producers: [producer.exited], direct: true })).rejects.toThrow();
    await expect(producer.exited).rejects.toThrow(/^yes (was killed by|exited 1)/);
  }, 20_000);
});

describe("openIntoDir of a base sealed direct (no raw SHA-256): zstd -d into tar through dd", () => {
  /** Seals what `cmd` writes (a tar stream) and returns a storage that serves it back. */
  async function sealed(cmd: string) {
    const producer = spawnTool("sh", ["-c", cmd], { stdin: "ignore" });
    const c = collector();
    const ref = await sealAndUpload({ storage: c.storage, key: "k", name: "base.tar", source: producer.child.stdout!, recipientFile: recipient, producers: [producer.exited], direct: true });
    const serve = (bytes: Buffer) => ({ bucket: "b", get: async () => ({ body: Readable.from([bytes]), size: bytes.length }) }) as unknown as Storage;
    return { ref: { key: "k", sha256: ref.sha256, storedBytes: ref.storedBytes, rawBytes: ref.rawBytes }, bytes: c.bytes(), serve };
  }
  const target = (name: string) => {
    const d = join(dir, name);
    mkdirSync(d, { recursive: true });
    return d;
  };

  it("unpacks every file, as tar -c read it", async () => {
    const src = target("src");
    for (let i = 0; i < 20; i++) writeFileSync(join(src, `f${i}`), `file ${i} `.repeat(50_000 * (i + 1)));
    const s = await sealed(`tar -c -C ${src} .`);
    const out = target("out");
    await openIntoDir({ storage: s.serve(s.bytes), ref: s.ref, identityFile: identity, label: "base.tar" }, out);
    expect(readdirSync(out).sort()).toEqual(readdirSync(src).sort());
    for (const f of readdirSync(src)) expect(readFileSync(join(out, f)).equals(readFileSync(join(src, f)))).toBe(true);
  });

  it("a flipped byte in the stored object fails on its SHA-256, not on what age or tar then said", async () => {
    const src = target("src2");
    writeFileSync(join(src, "a"), "x".repeat(3_000_000));
    const s = await sealed(`tar -c -C ${src} .`);
    const bad = Buffer.from(s.bytes);
    bad[Math.floor(bad.length / 2)]! ^= 0xff;
    const e = await openIntoDir({ storage: s.serve(bad), ref: s.ref, identityFile: identity, label: "base.tar" }, target("out2")).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(IntegrityError);
    expect((e as Error).message).toMatch(/^base\.tar: SHA-256 of s3:\/\/\S+ (\(version \S+\) )?is [0-9a-f]{64}, the catalog recorded [0-9a-f]{64}: the stored object is corrupt or was replaced\. Do not use it; restore from another backup\.$/);
  });

  it("a member tar refuses fails naming tar's reason, not the broken pipes upstream of it", async () => {
    const src = target("src3");
    writeFileSync(join(src, "member"), "evil");
    // GNU tar writes the name as given with -P; extracting, it refuses '..' and exits non-zero.
    const s = await sealed(`cd ${src} && tar -c -P -f - ../src3/member`);
    const e = await openIntoDir({ storage: s.serve(s.bytes), ref: s.ref, identityFile: identity, label: "base.tar" }, target("out3")).catch((x: unknown) => x);
    expect((e as Error).message).toMatch(/^tar exited 2: .*(\.\.|member)/s);
  });

  it("a key that is not the backup's fails as a key problem, naming the secret to mount", async () => {
    const s = await sealed("echo hello");
    const other = join(dir, "other-identity");
    spawnSync("age-keygen", ["-o", other], { stdio: "ignore" });
    const e = await openIntoDir({ storage: s.serve(s.bytes), ref: s.ref, identityFile: other, label: "base.tar" }, target("out4")).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as Error).message).toContain("mount the kdr-age-identity secret");
  });
});
