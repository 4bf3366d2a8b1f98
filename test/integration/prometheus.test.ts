/**
 * Prometheus and Alertmanager on the local platform, as the local stack declares them (Debian's
 * 2.42 and 0.25 in kryonix-dr/prometheus:local): Prometheus finds the sidecars through Swarm
 * service discovery, scrapes them, loads the rule file the program generates, and what it scraped
 * equals the catalog. Notices reach three real sinks on the host (an ntfy-shaped HTTP endpoint, a
 * JSON webhook, an SMTP server from npm smtp-server) through the notify relay: a failing backup
 * (Alertmanager's alert and the agent's own event, each once), the stale service it becomes, the
 * first success after it (and the stale alert clearing), a failed verify of a backup whose data
 * object was deleted, replication stopped by the DR region's
 * S3 server going down (and clearing when it is back), and a stopped sidecar that fires and, when
 * it answers again, clears.
 * Needs `bash scripts/platform-up.sh` first.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { SMTPServer } from "smtp-server";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeleteObjectCommand } from "@aws-sdk/client-s3";
import { readPlatform } from "../../local/platform.js";
import { s3Client } from "../support/s3.js";
import { loadStackConfig } from "../../local/program.js";
import { DEPLOYER_LABEL, DEPLOYMENTS_DIR, readState } from "../../local/deployer.js";
import { secretsPath } from "../../local/local-stack.js";
import { runAsync } from "../support/spawn.js";
import { DockerApi } from "../../local/docker-api.js";
import { dockerTry } from "../support/docker.js";
import { join } from "node:path";

const ROOT = join(__dirname, "..", "..");
const CLI = join(ROOT, "bin", "kryonix-dr.mjs");
const PROM = "http://127.0.0.1:19090";
const platform = readPlatform();
const REDIS_RPO_SECONDS = 60;

interface Sample { metric: Record<string, string>; value: [number, string] }
async function query(q: string): Promise<Sample[]> {
  const r = await fetch(`${PROM}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = (await r.json()) as { status: string; data: { result: Sample[] }; error?: string };
  if (body.status !== "success") throw new Error(`Prometheus refused ${q}: ${body.error}`);
  return body.data.result;
}
async function until<T>(what: string, seconds: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${seconds} s${last ? ` (last error: ${(last as Error).message})` : ""}`);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

/** What the sinks on the host received (the containers reach them at the gateway address). */
interface Received {
  sink: "ntfy" | "webhook" | "email";
  title: string;
  body: string;
  headers?: IncomingHttpHeaders;
  json?: { source: string; status: string; severity: string; service: string | null; type: string | null; alertmanager?: { groupKey: string } };
}
const received: Received[] = [];
/** The notification targets given to the deployment (a secret). */
let targetsJson = "";
let web: Server;
let smtp: SMTPServer;
const tmp = mkdtempSync(join(tmpdir(), "kdrtest-prom-"));

/** A mail's headers unfolded and its quoted-printable text decoded: enough to read it. */
function readMail(raw: string): { subject: string; body: string } {
  const [head, ...rest] = raw.split(/\r?\n\r?\n/);
  const subject = (head!.replace(/\r?\n[ \t]+/g, " ").match(/^Subject: (.*)$/im)?.[1] ?? "").trim();
  const body = rest.join("\n\n").replace(/=\r?\n/g, "").replace(/\r\n/g, "\n").replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
  return { subject, body };
}

beforeAll(async () => {
  web = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => {
      if (req.url === "/ntfy/kdr") received.push({ sink: "ntfy", title: String(req.headers.title ?? ""), body, headers: req.headers });
      if (req.url === "/hook") {
        const json = JSON.parse(body) as Received["json"] & { title: string; message: string };
        received.push({ sink: "webhook", title: json.title, body: json.message, json });
      }
      res.end("ok");
    });
  });
  await new Promise<void>((r) => web.listen(0, "0.0.0.0", r));
  smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    onData(stream, _session, cb) {
      let raw = "";
      stream.on("data", (d: Buffer) => (raw += d.toString()));
      stream.on("end", () => {
        const m = readMail(raw);
        received.push({ sink: "email", title: m.subject.replace(/^kryonix-dr /, ""), body: m.body });
        cb();
      });
    },
  });
  await new Promise<void>((r) => smtp.listen(0, "0.0.0.0", r));
  const webPort = (web.address() as { port: number }).port;
  const smtpPort = (smtp.server.address() as { port: number }).port;
  const gw = platform.gatewayIp;
  const targets = {
    oncall: { type: "ntfy", url: `http://${gw}:${webPort}/ntfy/kdr` },
    gateway: `http://${gw}:${webPort}/hook`,
    mail: { type: "email", url: `smtp://${gw}:${smtpPort}`, from: "kryonix-dr@example.com", to: ["ops@example.com"] },
  };
  targetsJson = JSON.stringify(targets);
  const config = join(tmp, "config.json");
  // Redis's RPO target is 60 s here (its incrementals run every 30 s), so a stale Redis is seen
  // within minutes; every other service as the stack file declares it.
  const services = (JSON.parse(loadStackConfig(ROOT, "local").config["kryonix-dr:services"]!) as Array<{ name: string }>).map((s) => (s.name === "redis" ? { ...s, rpoSeconds: REDIS_RPO_SECONDS } : s));
  writeFileSync(config, JSON.stringify({ notificationTargets: { value: targetsJson, secret: true }, services: { value: services } }), { mode: 0o600 });
  const d = await runAsync(process.execPath, [CLI, "deploy", "--stack", "local", "--quiet", "--config-file", config], { timeoutMs: 600_000, cwd: ROOT });
  if (d.status !== 0) throw new Error(`deploy of the local stack failed:\n${d.stderr.slice(-3000)}`);
}, 620_000);

/** The notices whose title matches, per sink. */
const bySink = (title: RegExp) => {
  const out: Record<Received["sink"], Received[]> = { ntfy: [], webhook: [], email: [] };
  for (const r of received) if (title.test(r.title)) out[r.sink].push(r);
  return out;
};
/** Waits until each of the three sinks holds at least one notice whose title matches. */
const atEverySink = (what: string, title: RegExp, seconds: number) =>
  until(what, seconds, async () => {
    const s = bySink(title);
    return s.ntfy.length && s.webhook.length && s.email.length ? s : undefined;
  }).catch((e: Error) => {
    throw new Error(`${e.message}; titles received: ${JSON.stringify(received.map((r) => `${r.sink}: ${r.title}`))}`);
  });

/** The drill cron's lines about Redis's verifies in the last 10 minutes, for a failure's message. */
function verifyLog(backupId?: string): string {
  const r = dockerTry(["service", "logs", "--raw", "--since", "10m", "kdr-local-drill"]);
  const mine = `${r.stdout}\n${r.stderr}`.split("\n").filter((l) => /verify-new-redis|verify redis/.test(l) || (backupId !== undefined && l.includes(backupId)));
  return `the drill cron's log on Redis's verifies (last 10 min, ${mine.length} lines):\n${mine.slice(-40).join("\n")}`;
}

async function scale(service: string, replicas: number): Promise<void> {
  const docker = new DockerApi();
  const svc = await docker.request<any>("GET", `/services/${service}`);
  await docker.request("POST", `/services/${svc.ID}/update?version=${svc.Version.Index}`, { ...svc.Spec, Mode: { Replicated: { Replicas: replicas } } });
}

afterAll(async () => {
  await runAsync(process.execPath, [CLI, "destroy", "--stack", "local", "--force", "--quiet"], { timeoutMs: 300_000, cwd: ROOT });
  web?.close();
  await new Promise<void>((r) => (smtp ? smtp.close(() => r()) : r()));
  rmSync(tmp, { recursive: true, force: true });
}, 320_000);

/** The local stack's sidecars: its three services' and the catalog server's. */
const EXPECTED_SIDECARS = ["files", "kdr-catalog", "postgresql", "redis"];

describe("Prometheus declared by the local stack", () => {
  it("discovers every sidecar through Swarm service discovery and scrapes it, and no service that serves no metrics", async () => {
    // Every target, not only the sidecars: a task that started last (the drill cron, say) is
    // "unknown" until its first scrape, which is no fault of its own.
    let seen: Array<{ labels: Record<string, string>; health: string; lastError?: string }> = [];
    const targets = await until("every sidecar, cron and replicator up", 120, async () => {
      const r = (await (await fetch(`${PROM}/api/v1/targets?state=active`)).json()) as { data: { activeTargets: typeof seen } };
      seen = r.data.activeTargets;
      // Each sidecar by name: a count was met by the catalog server's sidecar while the files
      // sidecar's task had not started yet (cold run 13).
      const sidecars = new Set(seen.filter((t) => t.labels.kdr_role === "sidecar").map((t) => t.labels.service));
      return EXPECTED_SIDECARS.every((x) => sidecars.has(x)) && seen.every((t) => t.health === "up") ? seen : undefined;
    }).catch((e: Error) => {
      const present = new Set(seen.map((t) => t.labels.service));
      throw new Error(
        `${e.message}; not up: ${JSON.stringify(seen.filter((t) => t.health !== "up").map((t) => ({ role: t.labels.kdr_role, health: t.health, lastError: t.lastError })))}; ` +
          `no target at all: ${EXPECTED_SIDECARS.filter((x) => !present.has(x)).join(", ") || "none"}`,
      );
    });
    const sidecarServices = targets.filter((t) => t.labels.kdr_role === "sidecar").map((t) => t.labels.service).sort();
    expect(sidecarServices).toEqual(expect.arrayContaining(["files", "postgresql", "redis"]));
    // The protected services themselves (PostgreSQL, Redis, files) and Prometheus serve no /metrics: not targets.
    expect(targets.filter((t) => !/^(sidecar|replicator|cron-.*)$/.test(t.labels.kdr_role ?? ""))).toEqual([]);
    expect(targets.filter((t) => t.health !== "up").map((t) => t.labels)).toEqual([]);
  }, 150_000);

  it("loaded the rule file the program generates", async () => {
    const r = (await (await fetch(`${PROM}/api/v1/rules`)).json()) as { data: { groups: Array<{ name: string; file: string; rules: Array<{ name: string; health: string }> }> } };
    const group = r.data.groups.find((g) => g.name === "kryonix-dr")!;
    expect(group.file).toBe("/etc/prometheus/rules/kryonix-dr.yml");
    expect(group.rules.map((x) => x.name).sort()).toEqual(
      ["KryonixDrAgentDown", "KryonixDrBackupFailures", "KryonixDrDrillFailed", "KryonixDrDrillOverdue", "KryonixDrReplicationLag", "KryonixDrResticRepositoryReplaced", "KryonixDrRpoAtRisk", "KryonixDrRpoBreached", "KryonixDrStandbyNotStreaming", "KryonixDrStandbyStuck", "KryonixDrUnverified", "KryonixDrVerifyFailed", "KryonixDrWalLag"].sort(),
    );
    expect(group.rules.filter((x) => x.health === "err")).toEqual([]);
  });

  it("scraped values equal the catalog's: Redis's last incremental, its stored and raw bytes, and each service's RPO target", async () => {
    const db = new pg.Client({ host: platform.catalog.host, port: platform.catalog.port, user: platform.catalog.user, password: platform.catalog.password, database: "kryonix_dr" });
    await db.connect();
    try {
      // One instant query, so the three values come from one scrape.
      const samples = await until("a Redis incremental scraped", 120, async () => {
        const s = await query('{__name__=~"kdr_backup_(last_success_timestamp_seconds|stored_bytes|raw_bytes)",service="redis",type="incremental"}');
        return s.length === 3 ? s : undefined;
      });
      const v = Object.fromEntries(samples.map((s) => [s.metric.__name__, Number(s.value[1])]));
      const { rows } = await db.query(
        `SELECT backup_size::float8 AS stored, raw_size::float8 AS raw, extract(epoch FROM completed_at)::float8 AS at FROM backup_management
          WHERE service_name = 'redis' AND backup_type = 'incremental' AND backup_status = 'completed'
          ORDER BY abs(extract(epoch FROM completed_at) - $1) LIMIT 1`,
        [v.kdr_backup_last_success_timestamp_seconds],
      );
      expect(Math.abs(rows[0].at - v.kdr_backup_last_success_timestamp_seconds!)).toBeLessThan(2);
      expect({ stored: v.kdr_backup_stored_bytes, raw: v.kdr_backup_raw_bytes }).toEqual({ stored: rows[0].stored, raw: rows[0].raw });
      // Each sidecar serves its target from its first scrape; one that Swarm started again a moment
      // ago is a scrape away.
      const services = ["postgresql", "redis", "files"];
      const targets = await until("every sidecar's kdr_rpo_target_seconds scraped", 60, async () => {
        const t = await query("kdr_rpo_target_seconds");
        return services.every((svc) => t.some((x) => x.metric.service === svc)) ? t : undefined;
      });
      const health = (await db.query("SELECT service_name, extract(epoch FROM rpo_target)::float8 AS rpo FROM backup_health_monitoring")).rows;
      for (const svc of services) {
        const scraped = targets.filter((t) => t.metric.service === svc).map((t) => Number(t.value[1]));
        expect(scraped.length, `${svc}: no kdr_rpo_target_seconds`).toBeGreaterThan(0);
        expect(new Set(scraped)).toEqual(new Set([health.find((h) => h.service_name === svc)!.rpo]));
      }
    } finally {
      await db.end();
    }
  }, 200_000);
});

/** The DR region's S3 server stopped until the lag alert is at every sink, then started again. */
async function replicationStopped() {
  const region = async (action: "stop" | "start") => {
    const r = await runAsync("bash", [join(ROOT, "scripts", "region.sh"), action, "dr"], { timeoutMs: 180_000, cwd: ROOT });
    if (r.status !== 0) throw new Error(`region.sh ${action} dr failed:\n${r.stderr.slice(-2000)}`);
  };
  const title = (state: string) => new RegExp(`^\\[${state}\\] the DR copy of the critical backups is more than 60 s behind the primary \\(see the replicator's log\\)$`);
  await region("stop");
  let lag: ReturnType<typeof bySink>;
  try {
    lag = await atEverySink("the replication-lag alert", title("FIRING"), 360);
  } finally {
    await region("start");
  }
  const caughtUp = await atEverySink("the replication-lag resolved notice", title("RESOLVED"), 300);
  return { lag, caughtUp };
}

/** The files sidecar's container paused until the sidecar-down alert is at every sink, then unpaused. */
async function sidecarPaused() {
  const docker = new DockerApi();
  const tasks = await docker.request<any[]>("GET", `/containers/json?filters=${encodeURIComponent(JSON.stringify({ label: ["com.docker.swarm.service.name=kdr-local-files-backup"] }))}`);
  if (tasks.length !== 1) throw new Error(`the files sidecar's container: ${tasks.length} running, expected 1`);
  const id = tasks[0].Id as string;
  await docker.request("POST", `/containers/${id}/pause`);
  let down: ReturnType<typeof bySink>;
  try {
    down = await atEverySink("the sidecar-down alert", /^\[FIRING\] files: backup agent not answering \/metrics$/, 150);
  } finally {
    await docker.request("POST", `/containers/${id}/unpause`);
  }
  const up = await atEverySink("the resolved notice", /^\[RESOLVED\] files: backup agent not answering \/metrics$/, 180);
  return { down, up };
}

describe("Notices reach ntfy, a webhook and email, through Alertmanager and the notify relay", () => {
  // The DR region's S3 server down and the files sidecar paused touch nothing the Redis cases
  // look at (their notices have titles of their own): they run beside them, started here, and
  // their tests below judge what they saw. One after the other they took ~220 s more.
  // (A rejection is handled here, so it is not unhandled before its test awaits it.)
  let replication: ReturnType<typeof replicationStopped> | undefined;
  let paused: ReturnType<typeof sidecarPaused> | undefined;
  beforeAll(() => {
    replication = replicationStopped();
    paused = sidecarPaused();
    for (const p of [replication, paused]) p.catch(() => undefined);
  });

  it("a failing backup (the protected Redis stopped): the alert once per group, and the agent's own event with its error once, at every sink", async () => {
    await scale("kdr-local-redis", 0);
    const alert = await atEverySink("the failure alert", /^\[FIRING\] redis: backup runs failed in the last 24 h$/, 180);
    expect(alert.ntfy[0]!.headers).toMatchObject({ priority: "high", tags: "warning" });
    expect(alert.ntfy[0]!.body).toMatch(/^Firing \(warning\):\n- redis: backup runs failed in the last 24 h \[(full|incremental)\]: since \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ/);
    expect(alert.webhook[0]!.json).toMatchObject({ source: "alertmanager", status: "firing", severity: "warning", service: "redis" });
    expect(alert.email[0]!.body).toContain("redis: backup runs failed in the last 24 h");
    const event = await atEverySink("the agent's failure event", /^redis: incremental backup failed$/, 120);
    // The error as the tool gave it (it may span lines), without redis-cli's progress chatter.
    expect(event.ntfy[0]!.body).toMatch(/^backup [0-9a-f-]{36} failed: \S[^]*\nat \d{4}-/);
    expect(event.ntfy[0]!.body).not.toMatch(/sending REPLCONF/);
    expect(event.webhook[0]!.json).toMatchObject({ source: "agent", status: "backup-failed", severity: "warning", service: "redis", type: "incremental" });
    // More failed runs follow every 30 s: nobody is told again. Alertmanager repeats a group every
    // 4 h; the agent tells only the change, and the relay drops a repeat of the same event.
    await new Promise((r) => setTimeout(r, 75_000));
    const alerts = bySink(/^\[FIRING\] redis: backup runs failed/);
    for (const sink of ["ntfy", "webhook", "email"] as const) {
      const groups = alerts.webhook.map((n) => n.json!.alertmanager!.groupKey);
      expect(new Set(groups).size, "one webhook notice per group").toBe(groups.length);
      // A full that fails in the same minutes is its own group (and its own event): never a repeat.
      expect(alerts[sink].length, sink).toBe(alerts.webhook.length);
      const events = bySink(/^redis: (full|incremental) backup failed$/)[sink].map((n) => n.title);
      expect(new Set(events).size, `${sink}: ${events.join("; ")}`).toBe(events.length);
    }
    // Still failing: its newest recovery point ages past the RPO target: a stale service.
    const stale = await atEverySink("the stale-service alert", /^\[FIRING\] redis: newest recovery point is older than its RPO target$/, 240);
    expect(stale.ntfy[0]!.headers).toMatchObject({ priority: "urgent", tags: "rotating_light" });
    expect(stale.webhook[0]!.json).toMatchObject({ source: "alertmanager", status: "firing", severity: "critical", service: "redis" });
  }, 700_000);

  it("the first backup that succeeds again is told, once, at every sink", async () => {
    await scale("kdr-local-redis", 1);
    const back = await atEverySink("the recovery event", /^redis: incremental backups succeed again$/, 180);
    const toldAt = Date.now();
    expect(back.ntfy[0]!.headers).toMatchObject({ priority: "default", tags: "white_check_mark" });
    expect(back.email[0]!.body).toMatch(/the previous incremental backup \([0-9a-f-]{36}\) had failed: /);
    const fresh = await atEverySink("the stale alert's resolved notice", /^\[RESOLVED\] redis: newest recovery point is older than its RPO target$/, 240);
    expect(fresh.webhook[0]!.json).toMatchObject({ status: "resolved", severity: "info", service: "redis" });
    // The next incremental (30 s later) succeeds too: nobody is told again.
    await new Promise((r) => setTimeout(r, Math.max(0, toldAt + 35_000 - Date.now())));
    const again = bySink(/^redis: incremental backups succeed again$/);
    expect([again.ntfy.length, again.webhook.length, again.email.length]).toEqual([1, 1, 1]);
  }, 600_000);

  it("a failed verify (a Redis backup's data object deleted with the region's admin key before the verify cron got to it): the alert at every sink, and the backup recorded as failed", async () => {
    const admin = s3Client(platform.regions.primary.loopbackEndpoint, platform.regions.primary.name, platform.regions.primary.accessKey, platform.regions.primary.secretKey);
    const db = new pg.Client({ host: platform.catalog.host, port: platform.catalog.port, user: platform.catalog.user, password: platform.catalog.password, database: "kryonix_dr" });
    await db.connect();
    try {
      let since = new Date();
      // A backup the cron has not judged yet (it verifies each minute at :30), its data object
      // deleted. A verify that had read the object before it went passes it, rightly (CI once
      // deleted one mid-verify and waited for an alert that could not come): then the next is taken.
      let damaged: { backup_id: string } | undefined;
      for (let attempt = 1; !damaged; attempt++) {
        const r = await until("a completed Redis backup no verify has judged", 240, async () => {
          const { rows } = await db.query<{ backup_id: string; bucket: string; key: string; version: string }>(
            `SELECT b.backup_id, b.storage_bucket AS bucket, a.object_key AS key, a.version_id AS version FROM backup_management b JOIN backup_artifact a USING (backup_id)
              WHERE b.service_name = 'redis' AND b.backup_status = 'completed' AND b.verify_status IS NULL AND b.completed_at > $1 AND a.role <> 'manifest'
              ORDER BY b.completed_at DESC LIMIT 1`,
            [since],
          );
          return rows[0];
        });
        await admin.send(new DeleteObjectCommand({ Bucket: r.bucket, Key: r.key, VersionId: r.version, BypassGovernanceRetention: true }));
        const verdict = await until(`the verify of backup ${r.backup_id}`, 240, async () => {
          const v = (await db.query<{ v: string | null }>("SELECT verify_status AS v FROM backup_management WHERE backup_id = $1", [r.backup_id])).rows[0]!.v;
          return v ?? undefined;
        }).catch((e: Error) => {
          throw new Error(`${e.message}\n${verifyLog(r.backup_id)}`);
        });
        if (verdict === "failed") damaged = r;
        else if (attempt === 3) throw new Error(`three backups deleted before their verify were all judged ${verdict}: the verify does not see a deleted data object`);
        else console.log(`backup ${r.backup_id}: judged ${verdict}, so its verify had read the object before the delete; taking the next one\n${verifyLog(r.backup_id)}`);
        since = new Date();
      }
      const failed = await atEverySink("the failed-verify alert", /^\[FIRING\] redis: a verify failed in the last 24 h /, 240).catch((e: Error) => {
        throw new Error(`${e.message}\n${verifyLog(damaged!.backup_id)}`);
      });
      expect(failed.webhook[0]!.json).toMatchObject({ source: "alertmanager", status: "firing", severity: "critical", service: "redis" });
      expect(failed.ntfy[0]!.headers).toMatchObject({ priority: "urgent" });
    } finally {
      await db.end();
    }
  }, 1_200_000);

  it("replication stopped (the DR region's S3 server down): the lag alert names the tier at every sink, and the resolved notice follows once the copies caught up", async () => {
    const { lag, caughtUp } = await replication!;
    expect(lag.webhook[0]!.json).toMatchObject({ source: "alertmanager", status: "firing", severity: "warning" });
    expect(lag.email[0]!.body).toContain("- the DR copy of the critical backups is more than 60 s behind the primary (see the replicator's log): since ");
    expect([caughtUp.ntfy.length, caughtUp.webhook.length, caughtUp.email.length]).toEqual([1, 1, 1]);
  }, 900_000);

  it("a stopped sidecar (its container paused): the alert fires at every sink, and the resolved notice follows when it answers again", async () => {
    const { down, up } = await paused!;
    expect(down.ntfy[0]!.headers).toMatchObject({ priority: "urgent", tags: "rotating_light" });
    expect(down.webhook[0]!.json).toMatchObject({ source: "alertmanager", status: "firing", severity: "critical", service: "files" });
    expect(up.webhook[0]!.json).toMatchObject({ status: "resolved", severity: "info" });
    expect(up.email[0]!.body).toMatch(/^Resolved:\n- files: backup agent not answering \/metrics: cleared at /m);
    expect([up.ntfy.length, up.webhook.length, up.email.length]).toEqual([1, 1, 1]);
  }, 400_000);
});

/**
 * The running deployment keeps its secrets to Swarm secrets: none of them (its generated passwords
 * and keys, each sidecar's S3 secret key, the platform's admin keys and catalog password, the
 * notification targets) appears in a service's spec, a container's inspect, a running process's
 * arguments, a container's log, or a row of the catalog.
 */
describe("no secret of the running local stack where anyone can read it", () => {
  it("not in docker service inspect, docker inspect, process arguments, logs, or the catalog", async () => {
    const docker = new DockerApi();
    const secrets = new Map<string, string>();
    const add = (name: string, v: unknown) => {
      if (typeof v === "string" && v.length >= 12) secrets.set(v, name);
    };
    const generated = JSON.parse(readFileSync(secretsPath("local", DEPLOYMENTS_DIR), "utf8")) as Record<string, string>;
    for (const [k, v] of Object.entries(generated)) {
      if (k === "ageRecipient") continue; // a public key
      add(k, k === "ageIdentity" ? /AGE-SECRET-KEY-[0-9A-Z]+/.exec(v)?.[0] : v);
    }
    for (const r of ["primary", "dr"] as const) add(`${r} region's admin secret key`, platform.regions[r].secretKey);
    add("the catalog server's password", platform.catalog.password);
    add("the notification targets", targetsJson);
    for (const t of Object.values(JSON.parse(targetsJson) as Record<string, string | { url: string }>)) add("a notification target's URL", typeof t === "string" ? t : t.url);
    for (const e of readState("local")!.resources) add(`${e.name}'s secret`, (e.outputs as { secret?: unknown } | undefined)?.secret);
    expect(secrets.size, "the secrets looked for").toBeGreaterThan(20);

    const leaks: string[] = [];
    const look = (where: string, text: string) => {
      for (const [v, name] of secrets) if (text.includes(v)) leaks.push(`${name} in ${where}`);
    };
    const filters = encodeURIComponent(JSON.stringify({ label: [`${DEPLOYER_LABEL}=local`] }));
    const services = await docker.request<Array<{ ID: string; Spec: { Name: string } }>>("GET", `/services?filters=${filters}`);
    expect(services.length).toBeGreaterThan(5);
    let containers = 0;
    for (const svc of services) {
      look(`docker service inspect ${svc.Spec.Name}`, JSON.stringify(svc));
      const tasks = await docker.request<Array<{ Id: string }>>("GET", `/containers/json?filters=${encodeURIComponent(JSON.stringify({ label: [`com.docker.swarm.service.name=${svc.Spec.Name}`] }))}`);
      for (const c of tasks) {
        containers++;
        look(`docker inspect of ${svc.Spec.Name}'s container`, JSON.stringify(await docker.request("GET", `/containers/${c.Id}/json`)));
        const top = await docker.request<{ Processes: string[][] }>("GET", `/containers/${c.Id}/top?ps_args=${encodeURIComponent("-eo pid,args")}`);
        look(`a process's arguments in ${svc.Spec.Name}`, JSON.stringify(top.Processes));
        const logs = await docker.logs(c.Id);
        look(`${svc.Spec.Name}'s log`, logs.stdout + logs.stderr);
      }
    }
    expect(containers, "running containers looked at").toBeGreaterThan(5);
    const db = new pg.Client({ host: platform.catalog.host, port: platform.catalog.port, user: platform.catalog.user, password: platform.catalog.password, database: "kryonix_dr" });
    await db.connect();
    try {
      const tables = (await db.query<{ t: string }>("SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS t FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'")).rows;
      expect(tables.length).toBeGreaterThan(3);
      for (const { t } of tables) look(`the catalog table ${t}`, (await db.query<{ r: string }>(`SELECT string_agg(x::text, E'\\n') AS r FROM ${t} x`)).rows[0]!.r ?? "");
    } finally {
      await db.end();
    }
    expect(leaks).toEqual([]);
  }, 300_000);
});
