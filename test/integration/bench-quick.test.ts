/**
 * `npm run bench -- --quick` runs end to end on the real platform (a 32 MiB PostgreSQL, the
 * seed's two pipelines and ours, backup and restore, the machine's limits, an incremental), so the
 * benchmark behind docs/benchmarks.md cannot rot. Its figures are not asserted: times on a shared
 * 2-core VM say nothing here; that every figure was measured (and every restore counted) does.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { runAsync } from "../support/spawn.js";

const ROOT = join(__dirname, "..", "..");
const dir = mkdtempSync(join(tmpdir(), "kdrtest-bench-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("npm run bench -- --quick measures every pipeline, the machine's limits and an incremental, and writes the table and the JSON", async () => {
  const md = join(dir, "bench.md");
  const json = join(dir, "bench.json");
  const r = await runAsync("npm", ["run", "--silent", "bench", "--", "--quick", "--out", md, "--json", json], { cwd: ROOT, timeoutMs: 600_000 });
  expect(r.status, r.stderr.slice(-4000)).toBe(0);
  expect(r.stderr).toMatch(/bench: 32 MiB: run 1\/1/);
  const report = JSON.parse(readFileSync(json, "utf8")) as {
    runs: number;
    machine: { cpus: number };
    sizes: Array<{
      databaseBytes: number;
      rows: number;
      limits: Record<string, number>;
      pipelines: Record<string, { backupWall: number[]; stored: number[]; restoreWall: number[]; backupPeak: number[]; restorePeak: number[] }>;
      incremental: { storedBytes: number; fullStoredBytes: number };
    }>;
  };
  expect(report.runs).toBe(1);
  expect(report.machine.cpus).toBeGreaterThan(0);
  expect(report.sizes).toHaveLength(1);
  const [s] = report.sizes;
  expect(s!.databaseBytes).toBeGreaterThan(32 * 2 ** 20);
  for (const [k, v] of Object.entries(s!.limits)) expect(v, k).toBeGreaterThan(0);
  const names = Object.keys(s!.pipelines);
  expect(names).toHaveLength(4);
  for (const [name, p] of Object.entries(s!.pipelines)) {
    expect(p.backupWall[0], name).toBeGreaterThan(0);
    expect(p.stored[0], name).toBeGreaterThan(0);
  }
  // Three pipelines restore (ours once: the default reads the same base); each restore was counted row by row.
  expect(Object.values(s!.pipelines).filter((p) => p.restoreWall.length === 1)).toHaveLength(3);
  const ours = s!.pipelines["ours: base, zstd, age, S3 multipart"]!;
  expect(ours.backupPeak[0]).toBeGreaterThan(0);
  expect(ours.restorePeak[0]).toBeGreaterThan(0);
  expect(s!.incremental.storedBytes).toBeGreaterThan(0);
  expect(s!.incremental.fullStoredBytes).toBe(ours.stored[0]);
  // The Markdown table names each pipeline and the machine.
  const text = readFileSync(md, "utf8");
  for (const n of names) expect(text).toContain(`| ${n} |`);
  expect(text).toMatch(/^Run .* UTC on \d+ x /);
}, 660_000);
