/**
 * Notifications that reach people. The relay (`kdr-agent notify-relay`) is the one container
 * holding the targets: Alertmanager posts its webhook to it, agents post events to it (a failed
 * backup, the first success after failures, a drill's result: what Prometheus cannot see), and it
 * formats each into one readable notice and sends it to every target: ntfy (text, title,
 * priority, tags), a generic JSON webhook, email over SMTP (nodemailer). Alertmanager groups and
 * repeats alerts; for events the relay drops a duplicate within DUPLICATE_SECONDS, and it sends at
 * most RATE_LIMIT notices per RATE_WINDOW_SECONDS, saying in the next one how many it held back.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createTransport, type Transporter } from "nodemailer";
import type SMTPTransport from "nodemailer/lib/smtp-transport";
import { Counter, Registry } from "prom-client";
import { NOTIFY_ALERTMANAGER_PATH, NOTIFY_EVENT_PATH, NOTIFY_EVENTS, parseNotificationTargets, type NotifyEvent, type NotifyTarget } from "../contract/notify.js";
import { ConfigError, type Settings } from "./config.js";
import { log } from "./storage/progress.js";

export const DUPLICATE_SECONDS = 600;
export const RATE_LIMIT = 20;
export const RATE_WINDOW_SECONDS = 300;
const SEND_TIMEOUT_MS = 10_000;

export type Severity = "critical" | "warning" | "info";
export interface Notice {
  source: "alertmanager" | "agent";
  /** firing or resolved (alerts); the event's name (agents). */
  status: string;
  severity: Severity;
  /** One line: the subject, ntfy's title. */
  title: string;
  /** Readable lines: what happened, since when, what to do. */
  body: string;
  service?: string;
  type?: string;
  /** Same key within DUPLICATE_SECONDS: a duplicate (events only). */
  key: string;
}

interface AmAlert {
  status: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
}
export interface AlertmanagerPayload {
  status: string;
  groupKey: string;
  commonLabels?: Record<string, string>;
  alerts: AmAlert[];
}

const RANK: Record<string, number> = { critical: 2, warning: 1 };
const when = (iso: string) => iso.replace(/\.\d+Z$/, "Z").replace("T", " ");

/** One notice for an Alertmanager group: what fires (or cleared), per alert, with since when. */
export function noticeFromAlerts(p: AlertmanagerPayload): Notice {
  const firing = p.alerts.filter((a) => a.status === "firing");
  const resolved = p.alerts.filter((a) => a.status !== "firing");
  const shown = firing.length ? firing : resolved;
  const state = firing.length ? "FIRING" : "RESOLVED";
  const top = shown.reduce((a, x) => ((RANK[x.labels.severity ?? ""] ?? 0) > (RANK[a] ?? 0) ? (x.labels.severity ?? a) : a), "info");
  const summary = (a: AmAlert) => a.annotations.summary ?? `${a.labels.alertname}${a.labels.service ? ` (${a.labels.service})` : ""}`;
  const title = `[${state}${shown.length > 1 ? ` ×${shown.length}` : ""}] ${shown.length === 1 ? summary(shown[0]!) : (p.commonLabels?.alertname ?? shown[0]!.labels.alertname)}`;
  const line = (a: AmAlert) =>
    `- ${summary(a)}${a.labels.type ? ` [${a.labels.type}]` : ""}: ${a.status === "firing" ? `since ${when(a.startsAt)}` : `cleared at ${when(a.endsAt)} (since ${when(a.startsAt)})`}`;
  const body = [
    ...(firing.length ? [`Firing (${firing[0]!.labels.severity ?? "unknown severity"}${firing.length > 1 ? " or other" : ""}):`, ...firing.map(line)] : []),
    ...(resolved.length ? [`Resolved:`, ...resolved.map(line)] : []),
    "",
    "Details: kryonix-dr status, and the log of the sidecar or cron named above.",
  ].join("\n");
  return {
    source: "alertmanager",
    status: firing.length ? "firing" : "resolved",
    severity: firing.length ? (top as Severity) : "info",
    title,
    body,
    service: p.commonLabels?.service,
    type: p.commonLabels?.type,
    key: `alert:${p.groupKey}:${state}`,
  };
}

const EVENT_TEXT: Record<NotifyEvent["event"], { severity: Severity; title: (e: NotifyEvent) => string; next: string }> = {
  "backup-failed": { severity: "warning", title: (e) => `${e.service}: ${e.type ?? ""} backup failed`.replace("  ", " "), next: "Further failures are not sent again until a backup succeeds; kryonix-dr status shows the run." },
  "backup-recovered": { severity: "info", title: (e) => `${e.service}: ${e.type ?? ""} backups succeed again`.replace("  ", " "), next: "" },
  "drill-passed": { severity: "info", title: (e) => `${e.service}: restore drill passed`, next: "" },
  "drill-failed": { severity: "critical", title: (e) => `${e.service}: restore drill FAILED`, next: "A backup could not be restored: find out why before you need it (the drill cron's log, kryonix-dr status)." },
};

export function noticeFromEvent(e: NotifyEvent): Notice {
  const t = EVENT_TEXT[e.event];
  return {
    source: "agent",
    status: e.event,
    severity: t.severity,
    title: t.title(e),
    body: [e.detail, `at ${when(e.at)}`, ...(t.next ? ["", t.next] : [])].join("\n"),
    service: e.service,
    type: e.type,
    key: `event:${e.event}:${e.service}:${e.type ?? ""}`,
  };
}

/** Checks an event an agent posted; throws a message naming what is wrong. */
export function parseEvent(v: unknown): NotifyEvent {
  const e = v as Partial<NotifyEvent> | null;
  if (!e || typeof e !== "object") throw new Error("an event is a JSON object");
  if (!NOTIFY_EVENTS.includes(e.event as NotifyEvent["event"])) throw new Error(`unknown event ${JSON.stringify(e.event)} (known: ${NOTIFY_EVENTS.join(", ")})`);
  if (typeof e.service !== "string" || !/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/.test(e.service)) throw new Error("event.service must be a service name");
  if (typeof e.detail !== "string" || typeof e.at !== "string") throw new Error("event.detail and event.at must be strings");
  return { event: e.event!, service: e.service, type: typeof e.type === "string" ? e.type : undefined, detail: e.detail.slice(0, 2000), at: e.at };
}

/** HTTP headers are Latin-1: anything else goes as an RFC 2047 encoded word (ntfy decodes it). */
const header = (v: string) => (/^[\x20-\x7e]*$/.test(v) ? v : `=?UTF-8?B?${Buffer.from(v).toString("base64")}?=`);
const NTFY_PRIORITY: Record<Severity, string> = { critical: "urgent", warning: "high", info: "default" };
const tags = (n: Notice) => (n.status === "resolved" || n.status === "backup-recovered" || n.status === "drill-passed" ? "white_check_mark" : n.severity === "critical" ? "rotating_light" : "warning");

const transports = new Map<string, Transporter>();
async function sendOne(t: NotifyTarget, n: Notice, extra: unknown): Promise<void> {
  if (t.type === "email") {
    let tr = transports.get(t.name);
    if (!tr) {
      tr = createTransport({ url: t.url, connectionTimeout: SEND_TIMEOUT_MS, greetingTimeout: SEND_TIMEOUT_MS, socketTimeout: SEND_TIMEOUT_MS } as SMTPTransport.Options);
      transports.set(t.name, tr);
    }
    await tr.sendMail({ from: t.from, to: t.to, subject: `kryonix-dr ${n.title}`, text: n.body + "\n" });
    return;
  }
  const r =
    t.type === "ntfy"
      ? await fetch(t.url, {
          method: "POST",
          body: n.body,
          headers: { Title: header(n.title), Priority: NTFY_PRIORITY[n.severity], Tags: tags(n), ...(t.token ? { Authorization: `Bearer ${t.token}` } : {}) },
          signal: AbortSignal.timeout(SEND_TIMEOUT_MS),
        })
      : await fetch(t.url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ source: n.source, status: n.status, severity: n.severity, title: n.title, message: n.body, service: n.service ?? null, type: n.type ?? null, ...(extra ? { alertmanager: extra } : {}) }),
          signal: AbortSignal.timeout(SEND_TIMEOUT_MS),
        });
  if (!r.ok) throw new Error(`HTTP ${r.status} ${(await r.text()).slice(0, 200)}`);
}

/** Sends to every target at once; one line of log per notice says where it went and what failed. */
export async function deliver(targets: NotifyTarget[], n: Notice, extra?: unknown): Promise<Array<{ target: string; error?: string }>> {
  const res = await Promise.all(
    targets.map((t) => sendOne(t, n, extra).then((): { target: string; error?: string } => ({ target: t.name }), (e: Error) => ({ target: t.name, error: e.message }))),
  );
  log(`notify: "${n.title}" -> ${res.map((r) => (r.error ? `${r.target} FAILED (${r.error})` : `${r.target} ok`)).join(", ")}`);
  return res;
}

/** Duplicate suppression (events) and the rate limit, in one place: decides, and remembers. */
export class Gate {
  private readonly lastByKey = new Map<string, number>();
  private sent: number[] = [];
  held = 0;
  admit(n: Notice, now = Date.now()): "send" | "duplicate" | "rate" {
    const last = this.lastByKey.get(n.key);
    if (n.source === "agent" && last !== undefined && now - last < DUPLICATE_SECONDS * 1000) return "duplicate";
    this.sent = this.sent.filter((t) => now - t < RATE_WINDOW_SECONDS * 1000);
    if (this.sent.length >= RATE_LIMIT) {
      this.held++;
      return "rate";
    }
    this.sent.push(now);
    this.lastByKey.set(n.key, now);
    return "send";
  }
}

const registry = new Registry();
const sentTotal = new Counter({ name: "kdr_notifications_total", help: "Notices sent by the relay, by target and result", labelNames: ["target", "result"], registers: [registry] });
const heldTotal = new Counter({ name: "kdr_notifications_suppressed_total", help: "Notices not sent: a duplicate event, or over the rate limit", labelNames: ["reason"], registers: [registry] });

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let body = "";
    req.on("data", (d: Buffer) => {
      body += d.toString();
      if (body.length > 1 << 20) req.destroy(new Error("body over 1 MiB"));
    });
    req.on("end", () => {
      try {
        resolve(JSON.parse(body));
      } catch (e) {
        reject(new Error(`not JSON: ${(e as Error).message}`));
      }
    });
    req.on("error", reject);
  });
}

/** The relay: reads the targets (a Swarm secret), then serves until stopped. */
export async function notifyRelay(s: Settings): Promise<void> {
  let targets: NotifyTarget[];
  try {
    targets = parseNotificationTargets(s.secret("notificationTargets"));
  } catch (e) {
    throw e instanceof ConfigError ? e : new ConfigError((e as Error).message);
  }
  for (const t of targets) {
    for (const r of ["sent", "failed"]) sentTotal.inc({ target: t.name, result: r }, 0);
  }
  const gate = new Gate();
  const handle = async (n: Notice, extra?: unknown) => {
    const verdict = gate.admit(n);
    if (verdict !== "send") {
      heldTotal.inc({ reason: verdict });
      if (verdict === "duplicate" || gate.held === 1) log(`notify: not sent (${verdict === "duplicate" ? `the same event within ${DUPLICATE_SECONDS} s` : `over ${RATE_LIMIT} notices in ${RATE_WINDOW_SECONDS} s; counted, and said in the next notice`}): "${n.title}"`);
      return;
    }
    if (gate.held > 0) {
      n = { ...n, body: `${n.body}\n\n(${gate.held} earlier notice(s) were held back: more than ${RATE_LIMIT} in ${RATE_WINDOW_SECONDS / 60} min. kryonix-dr status shows everything.)` };
      gate.held = 0;
    }
    for (const r of await deliver(targets, n, extra)) sentTotal.inc({ target: r.target, result: r.error ? "failed" : "sent" });
  };
  const srv = createServer((req: IncomingMessage, res: ServerResponse) => {
    const done = (code: number, text: string) => {
      res.writeHead(code, { "content-type": "text/plain" });
      res.end(text + "\n");
    };
    if (req.method === "GET" && req.url === "/healthz") return done(200, JSON.stringify({ ok: true, targets: targets.map((t) => `${t.name} (${t.type})`) }));
    if (req.method === "GET" && req.url === "/metrics") {
      void registry.metrics().then((b) => done(200, b));
      return;
    }
    if (req.method !== "POST" || (req.url !== NOTIFY_ALERTMANAGER_PATH && req.url !== NOTIFY_EVENT_PATH)) return done(404, `POST ${NOTIFY_ALERTMANAGER_PATH} or ${NOTIFY_EVENT_PATH}; GET /healthz or /metrics`);
    readBody(req)
      .then((v) => {
        if (req.url === NOTIFY_EVENT_PATH) return handle(noticeFromEvent(parseEvent(v)));
        const p = v as AlertmanagerPayload;
        if (!Array.isArray(p?.alerts) || p.alerts.length === 0) throw new Error("an Alertmanager webhook payload has alerts");
        return handle(noticeFromAlerts(p), p);
      })
      .then(
        () => done(200, "ok"),
        (e: Error) => done(400, e.message),
      );
  });
  srv.listen(s.metricsPort, "0.0.0.0");
  log(`notify-relay: ${targets.length} target(s): ${targets.map((t) => `${t.name} (${t.type})`).join(", ")}; Alertmanager posts to :${s.metricsPort}${NOTIFY_ALERTMANAGER_PATH}, agents to ${NOTIFY_EVENT_PATH}`);
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", () => resolve());
    process.once("SIGINT", () => resolve());
  });
  srv.close();
}

/**
 * An agent tells the relay (KDR_NOTIFY_URL) of an event. Never throws and never waits long: a
 * notice that cannot be posted is one line of log, and the run's own outcome stands.
 */
export async function sendEvent(s: Settings, e: Omit<NotifyEvent, "at">): Promise<void> {
  const url = s.get("notifyUrl");
  if (!url) return;
  try {
    const r = await fetch(url.replace(/\/$/, "") + NOTIFY_EVENT_PATH, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...e, at: new Date().toISOString() }),
      signal: AbortSignal.timeout(5000),
    });
    if (!r.ok) throw new Error(`HTTP ${r.status} ${(await r.text()).trim().slice(0, 200)}`);
  } catch (err) {
    log(`notify: could not tell the relay at ${url} (${(err as Error).message}); the ${e.event} of ${e.service} is only in the catalog and this log`);
  }
}
