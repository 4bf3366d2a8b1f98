/**
 * `npm run bench -- --quick` runs end to end on the real platform (a 32 MiB PostgreSQL, a 16 MiB
 * Redis, a 32 MiB volume; the seed's pipelines and ours, backup and restore, the machine's limits,
 * the incrementals), so the benchmark behind docs/benchmarks.md cannot rot. Its figures are not
 * asserted: times on a shared 2-core VM say nothing here; that every figure was measured (and every
 * restore checked whole) does.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { runAsync } from "../support/spawn.js";

const ROOT = join(__dirname, "..", "..");
const dir = mkdtempSync(join(tmpdir(), "kdrtest-bench-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("npm run bench -- --quick measures every pipeline of PostgreSQL, Redis and a volume, the machine's limits and the incrementals, and writes the table and the JSON", async () => {
  const md = join(dir, "bench.md");
  const json = join(dir, "bench.json");
  const r = await runAsync("npm", ["run", "--silent", "bench", "--", "--quick", "--out", md, "--json", json], { cwd: ROOT, timeoutMs: 600_000 });
  expect(r.status, r.stderr.slice(-4000)).toBe(0);
  for (const e of ["postgres 32", "redis 16", "volume 32"]) expect(r.stderr).toContain(`bench: ${e} MiB: run 1/1`);
  const report = JSON.parse(readFileSync(json, "utf8")) as {
    runs: number;
    machine: { cpus: number };
    sizes: Array<{
      engine: string;
      dataBytes: number;
      limits: Record<string, number | number[]> & { write: number; writes: number[] };
      pipelines: Record<string, { backupWall: number[]; stored: number[]; restoreWall: number[]; backupPeak: number[]; restorePeak: number[] }>;
      incremental?: { storedBytes: number; fullStoredBytes: number };
    }>;
  };
  expect(report.runs).toBe(1);
  expect(report.machine.cpus).toBeGreaterThan(0);
  expect(report.sizes.map((s) => s.engine)).toEqual(["postgres", "redis", "volume"]);
  const text = readFileSync(md, "utf8");
  expect(text).toMatch(/^Run .* UTC on \d+ x /);
  for (const s of report.sizes) {
    expect(s.dataBytes, s.engine).toBeGreaterThanOrEqual(16 * 2 ** 20);
    // Every limit a rate (the flushed write three times, its median the bound).
    for (const [k, v] of Object.entries(s.limits)) for (const x of [v].flat()) expect(x, `${s.engine} ${k}`).toBeGreaterThan(0);
    expect(s.limits.writes, s.engine).toHaveLength(3);
    expect(s.limits.write, s.engine).toBe([...s.limits.writes].sort((a, b) => a - b)[1]);
    const names = Object.keys(s.pipelines);
    // PostgreSQL: two seed pipelines and ours twice (the default full, then with the weekly logical
    // dump; one restore reads the same base). Redis: the seed's, ours, and ours restored once verified.
    expect(names.length, s.engine).toBe(({ postgres: 4, redis: 3, volume: 2 } as Record<string, number>)[s.engine]);
    // Every backup timed and stored (the verified Redis row restores ours' backup: no backup of its own).
    const backedUp = Object.entries(s.pipelines).filter(([name]) => !/verified, restored$/.test(name));
    expect(backedUp, s.engine).toHaveLength(s.engine === "redis" ? 2 : names.length);
    for (const [name, p] of backedUp) {
      expect(p.backupWall[0], `${s.engine} ${name}`).toBeGreaterThan(0);
      expect(p.stored[0], `${s.engine} ${name}`).toBeGreaterThan(0);
    }
    for (const name of names) expect(text).toContain(`| ${name} |`);
    // Every restore was checked whole (rows, values, files) before it was timed.
    expect(Object.values(s.pipelines).filter((p) => p.restoreWall.length === 1), s.engine).toHaveLength(({ postgres: 3, redis: 3, volume: 2 } as Record<string, number>)[s.engine]!);
    const ours = Object.entries(s.pipelines).find(([n]) => n.startsWith("ours:"))![1];
    expect(ours.backupPeak[0], s.engine).toBeGreaterThan(0);
    expect(ours.restorePeak[0], s.engine).toBeGreaterThan(0);
    if (s.engine !== "redis") {
      expect(s.incremental!.storedBytes, s.engine).toBeGreaterThan(0);
      expect(s.incremental!.storedBytes, s.engine).toBeLessThan(s.incremental!.fullStoredBytes);
    }
  }
}, 660_000);
