/**
 * sealAndUpload's `compressed` mode (the PostgreSQL base): a child's stdout, already zstd (as
 * pg_basebackup's client-zstd writes it), goes straight into age, the agent never relaying the raw
 * bytes; and pg_basebackup -P's count. Real zstd and age; the object store is a collector
 * (the S3 side of the pipeline is the same as the relayed mode's, tested against RGW).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ConfigError } from "../../agent/config.js";
import { basebackupCounter, BB_PROGRESS } from "../../agent/engines/postgres.js";
import { IntegrityError, openIntoDir, sealAndUpload, spawnTool, ZSTD_LEVEL } from "../../agent/storage/pipeline.js";
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

describe("sealAndUpload, compressed (a child's stdout, already zstd, straight into age)", () => {
  it("stores every byte, in order, and takes the raw count from the producer once it exited", async () => {
    // About 38 MB of text, compressed by the producer as pg_basebackup's client-zstd does.
    const producer = spawnTool("sh", ["-c", `seq 1 5000000 | zstd -q -c -${ZSTD_LEVEL} -T0`], { stdin: "ignore" });
    const c = collector();
    let exitedFirst: boolean | undefined;
    const sealed = await sealAndUpload({
      storage: c.storage,
      key: "k",
      name: "base.tar",
      source: producer.child.stdout!,
      recipientFile: recipient,
      producers: [producer.exited],
      compressed: { rawBytes: () => ((exitedFirst = producer.child.exitCode === 0), 38_888_896) },
    });
    const plain = open(c.bytes());
    expect(plain.equals(spawnSync("seq", ["1", "5000000"], { maxBuffer: 1 << 27 }).stdout)).toBe(true);
    expect(exitedFirst).toBe(true);
    expect(sealed.rawBytes).toBe(38_888_896);
    expect(sealed.rawSha256).toBeUndefined();
    expect(sealed.storedBytes).toBe(c.bytes().length);
    expect(sealed.storedBytes).toBeLessThan(plain.length / 2);
    expect(sealed.sha256).toBe(spawnSync("sha256sum", { input: c.bytes() }).stdout.toString().split(" ")[0]);
  }, 60_000);

  it("an empty source is an empty artifact, not an error", async () => {
    const producer = spawnTool("sh", ["-c", "zstd -q -c < /dev/null"], { stdin: "ignore" });
    const c = collector();
    const sealed = await sealAndUpload({ storage: c.storage, key: "k", name: "empty", source: producer.child.stdout!, recipientFile: recipient, producers: [producer.exited], compressed: { rawBytes: () => 0 } });
    expect(sealed.rawBytes).toBe(0);
    expect(open(c.bytes()).length).toBe(0);
  });

  it("a producer that fails midway fails the seal, naming the producer and what it said", async () => {
    const producer = spawnTool("sh", ["-c", "head -c 3000000 /dev/urandom | zstd -q -c; echo 'pg_basebackup: error: connection lost' >&2; exit 1"], { stdin: "ignore" });
    const c = collector();
    await expect(
      sealAndUpload({ storage: c.storage, key: "k", name: "base.tar", source: producer.child.stdout!, recipientFile: recipient, producers: [producer.exited], compressed: { rawBytes: () => 0 } }),
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
    await expect(sealAndUpload({ storage, key: "k", name: "x", source: producer.child.stdout!, recipientFile: recipient, producers: [producer.exited], compressed: { rawBytes: () => 0 } })).rejects.toThrow();
    await expect(producer.exited).rejects.toThrow(/^yes (was killed by|exited 1)/);
  }, 20_000);
});

describe("basebackupCounter (pg_basebackup -P's lines)", () => {
  it("reports progress as the count grows and gives the last count, in bytes, as the raw size", () => {
    const lines: string[] = [];
    const spy = vi.spyOn(process.stderr, "write").mockImplementation((s: string | Uint8Array) => (lines.push(String(s)), true));
    const counted = basebackupCounter(new Progress("pg_basebackup db", 4_292_751_360, 0));
    try {
      // As pg_basebackup 15 -P -v printed them for the bench's 4 GiB base (tar to stdout, client-zstd).
      for (const l of [
        " 277248/4192139 kB (6%), 0/1 tablespace (-.zst                              )",
        "3867592/4192139 kB (92%), 0/1 tablespace (-.zst                              )",
        "4208535/4208535 kB (100%), 0/1 tablespace (-.zst                              )",
        "4208535/4208535 kB (100%), 1/1 tablespace                                         ",
      ]) {
        expect(BB_PROGRESS.test(l)).toBe(true);
        counted.onChatter(l);
      }
    } finally {
      spy.mockRestore();
    }
    expect(counted.rawBytes()).toBe(4208535 * 1024);
    expect(lines.length).toBe(3);
    expect(lines[0]).toMatch(/^pg_basebackup db: 270\.8 MiB of 4\.0 GiB \(7%\)/);
    for (const l of ["pg_basebackup: write-ahead log start point: 1/A4000028 on timeline 1", "pg_basebackup: base backup completed"]) expect(BB_PROGRESS.test(l)).toBe(false);
  });
});

describe("openIntoDir of a base sealed compressed (no raw SHA-256): age -d, zstd -d and tar on OS pipes", () => {
  /** Seals what `cmd` writes (a tar stream) and returns a storage that serves it back. */
  async function sealed(cmd: string) {
    const producer = spawnTool("sh", ["-c", `${cmd} | zstd -q -c`], { stdin: "ignore" });
    const c = collector();
    const ref = await sealAndUpload({ storage: c.storage, key: "k", name: "base.tar", source: producer.child.stdout!, recipientFile: recipient, producers: [producer.exited], compressed: { rawBytes: () => 1 } });
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
