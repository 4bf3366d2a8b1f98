/**
 * Notification targets (contract/notify.ts) and the notify relay's formatting, duplicate
 * suppression and rate limit (agent/notify.ts); then the relay's delivery to a real ntfy-shaped
 * HTTP endpoint, a JSON webhook and an SMTP server (npm smtp-server), all on this host. The relay
 * in its container, fed by Alertmanager and the agents, is test/integration/prometheus.test.ts.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseNotificationTargets } from "../../contract/notify.js";
import { deliver, Gate, noticeFromAlerts, noticeFromEvent, parseEvent, RATE_LIMIT } from "../../agent/notify.js";

describe("parseNotificationTargets", () => {
  it("takes a URL string as a webhook, and ntfy and email targets by type", () => {
    expect(
      parseNotificationTargets(
        JSON.stringify({
          hook: "https://hooks.example/x",
          oncall: { type: "ntfy", url: "https://ntfy.example/kdr", token: "tk_1" },
          mail: { type: "email", url: "smtp://u:p@smtp.example:587", from: "kdr@example.com", to: "ops@example.com" },
        }),
      ),
    ).toEqual([
      { name: "hook", type: "webhook", url: "https://hooks.example/x" },
      { name: "oncall", type: "ntfy", url: "https://ntfy.example/kdr", token: "tk_1" },
      { name: "mail", type: "email", url: "smtp://u:p@smtp.example:587", from: "kdr@example.com", to: ["ops@example.com"] },
    ]);
  });

  it("names every bad target and the fix, and never echoes a value (it may hold a password)", () => {
    const bad = () =>
      parseNotificationTargets(
        JSON.stringify({
          a: "ops@example.com",
          b: { type: "ntfy", url: "https://ntfy.example/" },
          c: { type: "email", url: "smtp://u:secretpw@smtp.example", from: "nobody", to: [] },
          d: { type: "pager" },
        }),
      );
    expect(bad).toThrow(/a: "url" must be an http\(s\) URL; b: an ntfy "url" names the topic.*; c: "from" must be an address; "to" must be an address or a list of addresses; d: unknown "type" "pager".*pulumi config set --secret kryonix-dr:notificationTargets/);
    expect(bad).not.toThrow(/secretpw/);
    expect(() => parseNotificationTargets("oncall=https://x")).toThrow(/is not JSON .*pulumi config set --secret/);
    expect(() => parseNotificationTargets("{}")).toThrow(/non-empty map/);
  });
});

const alert = (status: string, labels: Record<string, string>, summary: string) => ({
  status,
  labels: { alertname: "KryonixDrBackupFailures", severity: "warning", ...labels },
  annotations: { summary },
  startsAt: "2026-12-02T10:00:00.123Z",
  endsAt: status === "firing" ? "0001-01-01T00:00:00Z" : "2026-12-02T10:05:00Z",
});

describe("notices", () => {
  it("an Alertmanager group reads as one line of title and a line per alert, with since when", () => {
    const n = noticeFromAlerts({ status: "firing", groupKey: "{}:{alertname=\"KryonixDrBackupFailures\"}", commonLabels: { service: "redis", type: "full" }, alerts: [alert("firing", { service: "redis", type: "full" }, "redis: backup runs failed in the last 24 h")] });
    expect(n).toMatchObject({ status: "firing", severity: "warning", title: "[FIRING] redis: backup runs failed in the last 24 h", service: "redis", type: "full" });
    expect(n.body).toContain("- redis: backup runs failed in the last 24 h [full]: since 2026-12-02 10:00:00Z");
    const r = noticeFromAlerts({ status: "resolved", groupKey: "g", alerts: [alert("resolved", { service: "redis" }, "redis: x")] });
    expect(r).toMatchObject({ status: "resolved", severity: "info", title: "[RESOLVED] redis: x" });
    expect(r.body).toContain("cleared at 2026-12-02 10:05:00Z");
  });

  it("events: a failed backup carries its error, a failed drill is critical", () => {
    const f = noticeFromEvent({ event: "backup-failed", service: "redis", type: "incremental", detail: "backup 1 failed: connect ECONNREFUSED", at: "2026-12-02T10:00:00Z" });
    expect(f).toMatchObject({ severity: "warning", title: "redis: incremental backup failed" });
    expect(f.body).toMatch(/^backup 1 failed: connect ECONNREFUSED\nat 2026-12-02 10:00:00Z\n\nFurther failures are not sent again/);
    expect(noticeFromEvent({ event: "drill-failed", service: "pg", type: "restore", detail: "x", at: "2026-12-02T10:00:00Z" })).toMatchObject({ severity: "critical", title: "pg: restore drill FAILED" });
    expect(() => parseEvent({ event: "hello", service: "pg", detail: "", at: "" })).toThrow(/unknown event "hello" \(known: backup-failed/);
    expect(() => parseEvent({ event: "drill-passed", service: "../x", detail: "", at: "" })).toThrow(/service name/);
  });

  it("the gate drops a repeated event within 10 min, never an alert, and holds back past the rate limit", () => {
    const g = new Gate();
    const e = noticeFromEvent({ event: "backup-failed", service: "redis", type: "full", detail: "d", at: "2026-12-02T10:00:00Z" });
    expect(g.admit(e, 0)).toBe("send");
    expect(g.admit(e, 599_000)).toBe("duplicate");
    expect(g.admit(e, 601_000)).toBe("send");
    const a = noticeFromAlerts({ status: "firing", groupKey: "g", alerts: [alert("firing", {}, "s")] });
    expect(g.admit(a, 601_000)).toBe("send");
    expect(g.admit(a, 601_000)).toBe("send");
    for (let i = 3; i < RATE_LIMIT; i++) expect(g.admit(a, 602_000)).toBe("send");
    expect(g.admit(a, 603_000)).toBe("rate");
    expect(g.held).toBe(1);
    expect(g.admit(a, 601_000 + 301_000)).toBe("send");
  });
});

describe("delivery to real endpoints", () => {
  const http: Array<{ path: string; headers: IncomingHttpHeaders; body: string }> = [];
  const mails: string[] = [];
  let web: Server;
  let smtp: SMTPServer;
  let webPort = 0;
  let smtpPort = 0;
  beforeAll(async () => {
    web = createServer((req, res) => {
      let body = "";
      req.on("data", (d: Buffer) => (body += d));
      req.on("end", () => {
        http.push({ path: req.url!, headers: req.headers, body });
        res.writeHead(req.url === "/broken" ? 500 : 200).end("ok");
      });
    });
    await new Promise<void>((r) => web.listen(0, "127.0.0.1", r));
    webPort = (web.address() as { port: number }).port;
    smtp = new SMTPServer({
      authOptional: true,
      disabledCommands: ["STARTTLS"],
      onData(stream, _session, cb) {
        let raw = "";
        stream.on("data", (d: Buffer) => (raw += d));
        stream.on("end", () => {
          mails.push(raw);
          cb();
        });
      },
    });
    await new Promise<void>((r) => smtp.listen(0, "127.0.0.1", r));
    smtpPort = (smtp.server.address() as { port: number }).port;
  });
  afterAll(async () => {
    web.close();
    await new Promise<void>((r) => smtp.close(() => r()));
  });

  it("ntfy gets text with title, priority and tags; the webhook JSON; email a plain-text mail; a failing target is named, the others still get it", async () => {
    const targets = parseNotificationTargets(
      JSON.stringify({
        oncall: { type: "ntfy", url: `http://127.0.0.1:${webPort}/kdr`, token: "tk_1" },
        hook: `http://127.0.0.1:${webPort}/hook`,
        mail: { type: "email", url: `smtp://127.0.0.1:${smtpPort}`, from: "kdr@example.com", to: ["ops@example.com"] },
        down: `http://127.0.0.1:${webPort}/broken`,
      }),
    );
    const n = noticeFromEvent({ event: "drill-failed", service: "postgresql", type: "restore", detail: "cron restore-drill-postgresql: failed (exit 1); its log ends:\nsha256 mismatch", at: "2026-12-02T10:00:00Z" });
    const res = await deliver(targets, n);
    expect(res).toEqual([{ target: "oncall" }, { target: "hook" }, { target: "mail" }, { target: "down", error: "HTTP 500 ok" }]);
    const ntfy = http.find((h) => h.path === "/kdr")!;
    expect(ntfy.headers).toMatchObject({ title: "postgresql: restore drill FAILED", priority: "urgent", tags: "rotating_light", authorization: "Bearer tk_1" });
    expect(ntfy.body).toContain("sha256 mismatch");
    const hook = JSON.parse(http.find((h) => h.path === "/hook")!.body);
    expect(hook).toMatchObject({ source: "agent", status: "drill-failed", severity: "critical", title: "postgresql: restore drill FAILED", service: "postgresql", type: "restore" });
    expect(mails).toHaveLength(1);
    expect(mails[0]).toMatch(/^Subject: kryonix-dr postgresql: restore drill FAILED\r?$/m);
    expect(mails[0]).toMatch(/^To: ops@example.com\r?$/m);
    expect(mails[0]).toContain("sha256 mismatch");
  });
});
