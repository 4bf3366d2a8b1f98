/**
 * What people read, on a real catalog: the Grafana dashboard and `kryonix-dr report`.
 * The dashboard the stacks output (components/dashboard.ts) is held to what it promises:
 * every SQL query runs against a real, migrated catalog as a login of the read-only role
 * (kryonix_dr_reader), over rows a real backup wrote, with Grafana's $__timeFilter macro
 * expanded as Grafana does; every PromQL expression parses with Prometheus's own promtool, and
 * the gauges' expressions evaluate to the series' values.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dashboardQueries, grafanaDashboard } from "../../components/dashboard.js";
import { readPlatform } from "../../local/platform.js";
import { agentWorld, type AgentWorld } from "../support/s3.js";
import { runAsync } from "../support/spawn.js";
import { fmtBytes } from "../../agent/storage/progress.js";
import { chromium } from "playwright-core";

let w: AgentWorld;
let reader: pg.Client;
let storedBytes = 0;
const SERVICE = "dash-files";
const queries = dashboardQueries();

/** Grafana's `$__timeFilter(col)`: the column within the dashboard's range (here its default, 7 days). */
const expand = (sql: string) => sql.replace(/\$__timeFilter\(([^)]+)\)/g, "$1 BETWEEN now() - interval '7 days' AND now()");

beforeAll(async () => {
  w = await agentWorld("kdrtest-dashboard");
  const vol = path.join(w.root, "volume");
  mkdirSync(vol);
  writeFileSync(path.join(vol, "a.txt"), "dashboard data\n".repeat(1000));
  const env = w.env(SERVICE, { KDR_ENGINE: "volume", KDR_VOLUME_PATH: vol });
  const b = await w.run(["backup", "--type", "full", "--json"], env);
  if (b.code !== 0) throw new Error(b.stderr);
  storedBytes = (JSON.parse(b.stdout) as { storedBytes: number }).storedBytes;
  // A failed run too, so the failure panels have a row: the volume found empty after a backup that held data.
  mkdirSync(path.join(w.root, "unmounted"));
  const f = await w.run(["backup", "--type", "incremental"], { ...env, KDR_VOLUME_PATH: path.join(w.root, "unmounted") });
  if (f.code !== 1) throw new Error(`the failing run did not fail: ${f.stderr}`);
  // Grafana's datasource logs in as a member of the read-only role.
  await w.db.query("CREATE ROLE kdrtest_grafana LOGIN PASSWORD 'grafana-reads' IN ROLE kryonix_dr_reader");
  const url = new URL(w.catalog.urlFor("kryonix_dr"));
  reader = new pg.Client({ host: url.hostname, port: Number(url.port), database: "kryonix_dr", user: "kdrtest_grafana", password: "grafana-reads" });
  await reader.connect();
}, 300_000);

afterAll(async () => {
  await reader?.end().catch(() => undefined);
  await w?.close();
});

describe("the dashboard's SQL, as the read-only role on a real catalog", () => {
  it("has a query for every catalog panel, and each one runs", async () => {
    expect(queries.sql.length).toBeGreaterThanOrEqual(8);
    for (const q of queries.sql) {
      const r = await reader.query(expand(q)).catch((e: Error) => e);
      expect(r instanceof Error ? `${r.message}\n${q}` : "ok").toBe("ok");
    }
  });

  it("its cards equal the catalog's own figures", async () => {
    const one = async (title: string) => {
      const q = queries.sql.find((s) => s.includes(title))!;
      return Object.values((await reader.query(expand(q))).rows[0] as Record<string, unknown>)[0];
    };
    expect(Number(await one("count(*) AS backups"))).toBe(2);
    expect(Number(await one('AS "success %"'))).toBe(50);
    expect(Number(await one("sum(backup_size)"))).toBe(storedBytes);
    const status = (await reader.query(expand(queries.sql.find((s) => s.includes("FROM backup_health"))!))).rows;
    expect(status.map((r) => r.service)).toEqual([SERVICE]);
    const failures = (await reader.query(expand(queries.sql.find((s) => s.includes("AS reason"))!))).rows;
    expect(failures).toHaveLength(1);
    expect(failures[0].reason).toMatch(/is empty, but the last backup/);
  });

  it("cannot write through the reader login (the datasource's role)", async () => {
    await expect(reader.query("DELETE FROM backup_management")).rejects.toThrow(/permission denied/);
  });
});

describe("the dashboard's PromQL, with promtool", () => {
  const promtool = readPlatform().tools.promtool;
  const dir = mkdtempSync(path.join(tmpdir(), "kdrtest-dash-promql-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("every expression parses (promtool check rules, each as a recording rule)", () => {
    expect(queries.promql.length).toBeGreaterThanOrEqual(5);
    const rules = { groups: [{ name: "dashboard", rules: queries.promql.map((expr, i) => ({ record: `kdr_dashboard_panel_${i}`, expr })) }] };
    writeFileSync(path.join(dir, "dashboard.yml"), JSON.stringify(rules));
    const r = spawnSync(promtool, ["check", "rules", "dashboard.yml"], { cwd: dir, encoding: "utf8" });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`SUCCESS: ${queries.promql.length} rules found`);
  });

  it("the gauges read the agents' series as they are exported", () => {
    const series = [
      // The sidecar's newest verified point, and an older one a cron container's health job left.
      { series: 'kdr_recovery_point_timestamp_seconds{job="kryonix-dr", instance="a", service="pg"}', values: "180x10" },
      { series: 'kdr_recovery_point_timestamp_seconds{job="kryonix-dr", instance="b", service="pg"}', values: "60x10" },
      { series: 'kdr_rpo_target_seconds{job="kryonix-dr", instance="a", service="pg"}', values: "300x10" },
      { series: 'kdr_backup_duration_seconds{job="kryonix-dr", instance="a", service="pg", type="full"}', values: "42x10" },
      { series: 'kdr_wal_lag_seconds{job="kryonix-dr", instance="a", service="pg"}', values: "7x10" },
    ];
    const expect1 = (expr: string, labels: string, value: number) => ({ expr, eval_time: "5m", exp_samples: [{ labels, value }] });
    const tests = [
      // At 5 m (unix time 300) the newest point, 180, is 120 s old.
      expect1("time() - max by (service) (kdr_recovery_point_timestamp_seconds)", '{service="pg"}', 120),
      expect1("max by (service) (kdr_rpo_target_seconds)", '{service="pg"}', 300),
      expect1("max by (service, type) (kdr_backup_duration_seconds)", '{service="pg", type="full"}', 42),
      expect1("max by (service) (kdr_wal_lag_seconds)", '{service="pg"}', 7),
    ];
    for (const t of tests) expect(queries.promql, "the tested expression is the dashboard's").toContain(t.expr);
    writeFileSync(path.join(dir, "test.yml"), JSON.stringify({ rule_files: [], evaluation_interval: "1m", tests: [{ interval: "1m", input_series: series, promql_expr_test: tests }] }));
    const r = spawnSync(promtool, ["test", "rules", "test.yml"], { cwd: dir, encoding: "utf8" });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });
});

describe("the dashboard JSON", () => {
  it("is what the stacks output: importable, its datasources as variables", () => {
    const d = grafanaDashboard() as { uid: string; panels: Array<{ id: number; datasource: { uid: string } }>; templating: { list: Array<{ name: string; type: string }> } };
    expect(d.uid).toBe("kryonix-dr");
    expect(d.templating.list.map((v) => [v.name, v.type])).toEqual([["catalog", "datasource"], ["prometheus", "datasource"]]);
    for (const p of d.panels) expect(["${catalog}", "${prometheus}"]).toContain(p.datasource.uid);
    expect(new Set(d.panels.map((p) => p.id)).size).toBe(d.panels.length);
  });
});

describe("kryonix-dr report, as the read-only role", () => {
  let html = "";
  let text = "";
  beforeAll(async () => {
    const url = new URL(w.catalog.urlFor("kryonix_dr"));
    const out = path.join(w.root, "report.html");
    const r = await runAsync(process.execPath, [path.join(__dirname, "..", "..", "bin", "kryonix-dr.mjs"), "report", "--html", out, "--text", "-"], {
      timeoutMs: 120_000,
      env: { ...process.env, PGHOST: url.hostname, PGPORT: url.port, PGDATABASE: "kryonix_dr", PGUSER: "kdrtest_grafana", PGPASSWORD: "grafana-reads" },
    });
    if (r.status !== 0) throw new Error(r.stderr);
    html = readFileSync(out, "utf8");
    text = r.stdout;
  }, 180_000);

  it("the text summary's figures are the catalog's", () => {
    expect(text).toContain("Backups: 2 (1 completed, 1 failed); success rate 50 %");
    expect(text).toContain(`Storage used: ${fmtBytes(storedBytes)}`);
    expect(text).toMatch(new RegExp(`!! ${SERVICE}: .*is empty, but the last backup`));
  });

  it("the HTML page is self-contained (no script, nothing fetched) and carries the same cards and the service", () => {
    expect(html).not.toMatch(/<script|<link|\ssrc=|url\(/i);
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).toContain('<div class="label">Success rate</div><div class="value">50 %</div>');
    expect(html).toContain(`<div class="label">Storage used</div><div class="value">${fmtBytes(storedBytes)}</div>`);
    expect(html).toContain(`<td>${SERVICE}</td>`);
    expect(html).toContain("No recovery or drill recorded.");
    expect(html).toMatch(/<svg viewBox="0 0 600 \d+" role="img" aria-label="Stored size per backup">/);
  });

  it("renders in headless Chromium at 1280 and 390 px: the cards read the catalog's figures and nothing overflows", async () => {
    const file = path.join(w.root, "report.html");
    // docs/report-*.png are these screenshots; KDR_UPDATE_SCREENSHOTS=1 writes them there.
    const shots = process.env.KDR_UPDATE_SCREENSHOTS === "1" ? path.join(__dirname, "..", "..", "docs") : w.root;
    const browser = await chromium.launch({
      executablePath: "/usr/bin/chromium",
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
    });
    try {
      for (const width of [1280, 390]) {
        const page = await browser.newPage({ viewport: { width, height: 900 } });
        const requests: string[] = [];
        page.on("request", (r) => requests.push(r.url()));
        await page.goto(`file://${file}`);
        expect(requests.filter((u) => !u.startsWith("file://")), "fetches nothing").toEqual([]);
        const cards = await page.$$eval(".card", (els) => els.map((e) => [e.querySelector(".label")!.textContent, e.querySelector(".value")!.textContent]));
        expect(Object.fromEntries(cards)).toMatchObject({ Backups: "2", "Success rate": "50 %", "Storage used": fmtBytes(storedBytes) });
        // The page never scrolls sideways, and no box spills out of itself (tables may scroll inside their frame).
        const overflow = await page.evaluate(() => {
          const out: string[] = [];
          if (document.documentElement.scrollWidth > window.innerWidth) out.push(`page ${document.documentElement.scrollWidth} > ${window.innerWidth}`);
          for (const el of Array.from(document.querySelectorAll<HTMLElement>("h1, h2, p, .card, .card *, figure, figcaption, .scroll"))) {
            if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX === "visible") out.push(`${el.tagName}.${el.className}: ${el.scrollWidth} > ${el.clientWidth}`);
          }
          return out;
        });
        expect(overflow, `at ${width} px`).toEqual([]);
        await page.screenshot({ path: path.join(shots, `report-${width}.png`), fullPage: true });
        await page.close();
      }
    } finally {
      await browser.close();
    }
  }, 180_000);

  it("refuses a report with nowhere to go, or a bad period, naming the fix", async () => {
    const cli = (args: string[]) => runAsync(process.execPath, [path.join(__dirname, "..", "..", "bin", "kryonix-dr.mjs"), "report", ...args], { timeoutMs: 60_000 });
    const none = await cli([]);
    expect(none.status).toBe(2);
    expect(none.stderr).toContain("give --html <file>, --text <file>, or both");
    const bad = await cli(["--text", "-", "--days", "0"]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("--days '0' must be a whole number of days from 1 to 366");
  });
});
