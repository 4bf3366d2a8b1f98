/**
 * Who is told, and what an agent tells. `kryonix-dr:notificationTargets` (a Pulumi secret) names
 * each target; the program checks it here at preview, and the notify relay (the only container
 * that holds it, as a Swarm secret) parses it with the same function. Agents never hold a
 * target: they post an event to the relay, which formats it and fans it out.
 */

/** A name and where to send: a generic JSON webhook, an ntfy topic, or email over SMTP. */
export type NotifyTarget =
  | { name: string; type: "webhook"; url: string }
  | { name: string; type: "ntfy"; url: string; token?: string }
  | { name: string; type: "email"; url: string; from: string; to: string[] };

/** The relay listens here (its /healthz and /metrics too). */
export const NOTIFY_RELAY_PORT = 9470;
/** Alertmanager posts its webhook here; agents post an event to NOTIFY_EVENT_PATH. */
export const NOTIFY_ALERTMANAGER_PATH = "/alertmanager";
export const NOTIFY_EVENT_PATH = "/event";

/** What an agent saw that Prometheus cannot: a run's outcome, with its error. */
export const NOTIFY_EVENTS = ["backup-failed", "backup-recovered", "drill-passed", "drill-failed"] as const;
export type NotifyEventName = (typeof NOTIFY_EVENTS)[number];
export interface NotifyEvent {
  event: NotifyEventName;
  service: string;
  /** The backup type (full, incremental) or the job (restore drill). */
  type?: string;
  /** One line or a few: the error, or the result. */
  detail: string;
  /** ISO time the agent saw it. */
  at: string;
}

const EXAMPLE =
  `{"oncall": {"type": "ntfy", "url": "https://ntfy.example/kryonix-dr"}, "gateway": "https://hooks.example/whatsapp", ` +
  `"mail": {"type": "email", "url": "smtp://user:pass@smtp.example:587", "from": "kryonix-dr@example.com", "to": ["ops@example.com"]}}`;
const FIX = `set it with 'pulumi config set --secret kryonix-dr:notificationTargets', e.g. ${EXAMPLE}`;
const EMAIL = /^[^\s@<>]+@[^\s@<>]+$/;

/**
 * Parses and checks the targets. A string value is a webhook URL. Every problem is named, with
 * the target's name; an empty map is refused (leave the setting out to notify nobody).
 */
export function parseNotificationTargets(json: string): NotifyTarget[] {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch (e) {
    throw new Error(`kryonix-dr:notificationTargets is not JSON (${(e as Error).message}): ${FIX}`);
  }
  if (!v || typeof v !== "object" || Array.isArray(v) || Object.keys(v).length === 0) {
    throw new Error(`kryonix-dr:notificationTargets must be a non-empty map of names to targets: ${FIX}`);
  }
  const problems: string[] = [];
  const out: NotifyTarget[] = [];
  for (const [name, raw] of Object.entries(v as Record<string, unknown>)) {
    const t = typeof raw === "string" ? { type: "webhook", url: raw } : (raw as Record<string, unknown> | null);
    if (!t || typeof t !== "object" || Array.isArray(t)) {
      problems.push(`${name}: a URL string or an object with "type" (webhook, ntfy, email)`);
      continue;
    }
    const url = typeof t.url === "string" ? t.url : "";
    if (t.type === "webhook" || t.type === "ntfy") {
      if (!/^https?:\/\/[^\s/]+\S*$/.test(url)) problems.push(`${name}: "url" must be an http(s) URL${t.type === "ntfy" ? " of the topic (https://ntfy.example/<topic>)" : ""}`);
      else if (t.type === "ntfy" && !/^https?:\/\/[^/]+\/[^/\s]+/.test(url)) problems.push(`${name}: an ntfy "url" names the topic: https://ntfy.example/<topic>`);
      else if (t.type === "ntfy" && t.token !== undefined && typeof t.token !== "string") problems.push(`${name}: "token" must be a string (an ntfy access token)`);
      else out.push(t.type === "ntfy" ? { name, type: "ntfy", url, ...(typeof t.token === "string" ? { token: t.token } : {}) } : { name, type: "webhook", url });
    } else if (t.type === "email") {
      const to = typeof t.to === "string" ? [t.to] : Array.isArray(t.to) ? t.to : [];
      const bad: string[] = [];
      if (!/^smtps?:\/\/[^\s/]+/.test(url)) bad.push(`"url" must be smtp://[user:pass@]host[:port] (STARTTLS when offered) or smtps:// (TLS)`);
      if (typeof t.from !== "string" || !EMAIL.test(t.from)) bad.push(`"from" must be an address`);
      if (to.length === 0 || to.some((a) => typeof a !== "string" || !EMAIL.test(a))) bad.push(`"to" must be an address or a list of addresses`);
      if (bad.length) problems.push(`${name}: ${bad.join("; ")}`);
      else out.push({ name, type: "email", url, from: t.from as string, to: to as string[] });
    } else {
      problems.push(`${name}: unknown "type" ${JSON.stringify(t.type)} (accepted: webhook, ntfy, email)`);
    }
  }
  if (problems.length) throw new Error(`kryonix-dr:notificationTargets: ${problems.join("; ")}. ${FIX}`);
  return out;
}
