/**
 * `kryonix-dr drill --disaster failover`: the fast path, rehearsed (issue #14). The local stack
 * runs the primaries; the local-dr stack (Pulumi.local-dr.yaml) runs their warm standbys, fed
 * from the DR region's copies. Writers write continuously through the stable names (`postgresql`,
 * `redis`) from client containers on the application network. Then the primary region is lost
 * (its services killed and removed, its S3 server stopped), the local-dr stack is deployed with
 * kryonix-dr:active true, and the drill measures how long until the same names take writes again,
 * checks that every write acknowledged more than the service's RPO before the loss is there, and
 * waits for the promoted services' first backups in the DR region, verified.
 * Each step is a command of docs/runbooks.md §9.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import * as cat from "../../catalog/queries.js";
import { LABELS } from "../../contract/index.js";
import { destroy, readState } from "../deployer.js";
import { generatedSecrets, localStackConfig } from "../local-stack.js";
import { loadStackConfig } from "../program.js";
import { deployInChild, stackServices } from "./deploy.js";
import { docker, dockerExec, removeService, serviceContainers, waitForTask } from "./docker.js";
import { clearPreviousDrill, deployLocal, iso, waitForServices, watchBackups, type DrillRun } from "./phases.js";
import { setRegion, waitForCopies } from "./region.js";
import { LOCAL_STACK } from "./stacks.js";
import { runFailback, type FailbackReport } from "./failback.js";
import { statusAfterReversal, waitForStandbys, type StandbyPlace } from "./standbys.js";
import { prepare, readBack, Writer, type WriterStats } from "./writers.js";
import type { Config } from "./stacks.js";

export const LOCAL_DR_STACK = "local-dr";
/** The issue's bar for the fast path: kill to first write on the promoted side. */
export const FAILOVER_TARGET_SECONDS = 60;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface FailoverServiceReport {
  service: string;
  engine: string;
  rpoTargetSeconds: number;
  /** Kill to the first write acknowledged through the stable name by the promoted service. */
  failoverSeconds: number | null;
  acknowledgedBeforeLoss: number;
  /** Acknowledged more than the RPO before the loss, and missing: must be none. */
  missingBeyondRpo: string[];
  /** Acknowledged within the RPO before the loss, and missing (allowed, reported). */
  missingWithinRpo: number;
  /** The loss to the newest write before it that the promoted service holds. */
  dataLossSeconds: number | null;
  /** How the standby followed before the loss (PostgreSQL: streaming from the primary; Redis: a replica). */
  followedBefore: string | null;
  writesAfterFailover: number;
  missingAfterFailover: string[];
  drBackup?: { backupId: string; type: string; verifyStatus: string | null };
  /** Seconds from the primary region's return until every artifact of drBackup was copied back to it (replication reversed). */
  reversedAfterSeconds?: number | null;
}

export interface FailoverReport {
  ok: boolean;
  runId: string;
  disaster: "failover";
  startedAt: string;
  finishedAt: string;
  lostAt: string;
  phases: Array<{ name: string; seconds: number }>;
  services: FailoverServiceReport[];
  /** The activation's own rows in disaster_recovery_log (one per promoted service). */
  activations: Array<{ recoveryId: string; service: string; seconds: number | null; phases: Record<string, number> }>;
  recoveryLog?: { recoveryId: string; status: string; actualRecoverySeconds: number | null; dataLossSeconds: number | null };
  /** The way back (runbook §9c): the returned services, what they hold, the hand-over. */
  failback?: FailbackReport;
  failures: string[];
  kept: boolean;
  reportFile?: string;
}

/** Config of the local-dr stack as the drill deploys it: platform facts, the primary's secrets, the switch. */
export function drillDrConfig(run: Pick<DrillRun, "platform" | "projectDir" | "stateDir">, active: boolean): Config {
  return { ...localStackConfig(run.platform, LOCAL_DR_STACK, run.stateDir, run.projectDir), active: { value: active } };
}

/** The local-dr stack's service name prefix (its standbys are `<prefix>-<service>`). */
export function drPrefix(run: Pick<DrillRun, "projectDir">): string {
  return loadStackConfig(run.projectDir, LOCAL_DR_STACK).config["kryonix-dr:namePrefix"] ?? "kdr-local-dr";
}

/** The local-dr stack's standbys (generation 1). */
const drStandbys = (run: DrillRun): StandbyPlace => ({ name: (service) => `${drPrefix(run)}-${service}`, region: run.platform.regions.dr.name });

/** A client container on the application network, which reaches the services by their stable names. */
async function startClient(run: DrillRun, service: string, network: string, password?: string): Promise<{ id: string; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), "kdr-failover-"));
  chmodSync(dir, 0o700);
  const binds: string[] = [];
  if (password !== undefined) {
    writeFileSync(join(dir, "password"), password, { mode: 0o400 });
    binds.push(`${join(dir, "password")}:/run/secrets/kdr-target-password:ro`);
  }
  const name = `kdr-drill-client-${service}-${run.runId}`;
  const c = await docker.request<{ Id: string }>("POST", `/containers/create?name=${encodeURIComponent(name)}`, {
    Image: run.platform.images.agent,
    Entrypoint: ["sleep", "infinity"],
    Labels: { [LABELS.managed]: "true", [LABELS.role]: "drill-client" },
    HostConfig: { Binds: binds, NetworkMode: network, Init: true },
  });
  await docker.request("POST", `/containers/${c.Id}/start`);
  return { id: c.Id, dir };
}

async function removeClient(c: { id: string; dir: string }): Promise<void> {
  await docker.request("DELETE", `/containers/${c.id}?force=true`).catch(() => undefined);
  rmSync(c.dir, { recursive: true, force: true });
}

/**
 * The loss of the primary region: its services killed at once (SIGKILL, no shutdown), which is
 * the moment returned, and removed (so Swarm does not restart them); its S3 server is stopped and
 * the sidecars removed from that moment on, in `rest`, while the operator fails over (in a real
 * loss nothing waits for the simulation to finish; the caller awaits `rest` before judging).
 */
async function loseThePrimaryRegion(run: DrillRun): Promise<{ lostAt: number; rest: Promise<void> }> {
  const names = run.services.map((s) => `${run.prefix}-${s.name}`);
  const sidecars = (await stackServices(LOCAL_STACK)).filter((s) => s.labels[LABELS.role] === "sidecar" && run.services.some((x) => x.name === s.labels[LABELS.protects])).map((s) => s.name);
  // A lost region stops at once: its sidecars are killed with the services, not shut down (a
  // graceful stop of each would also load this one machine just while the failover runs).
  const containers = (await Promise.all([...names, ...sidecars].map((n) => serviceContainers(n)))).flat();
  await Promise.all(containers.map((c) => docker.request("POST", `/containers/${c.Id}/kill?signal=KILL`).catch(() => undefined)));
  const lostAt = Date.now();
  run.log(`  killed ${names.join(", ")} at ${iso(lostAt)}`);
  const rest = Promise.all([
    setRegion("stop", "primary", run.projectDir, run.log).then(() => run.log("  stopped the primary S3 region")),
    ...sidecars.map((name) => removeService(name)),
  ]).then(() => undefined);
  rest.catch(() => undefined);
  await Promise.all(names.map((name) => removeService(name).then(() => run.log(`  removed ${name}`))));
  return { lostAt, rest };
}

/** Judges what the promoted service holds against what was acknowledged. */
function judge(s: DrillRun["services"][number], st: WriterStats, got: Map<string, string>, lostAt: number, rpoSeconds: number): Omit<FailoverServiceReport, "failoverSeconds" | "drBackup" | "followedBefore"> {
  // Which side took a write is told by the server's own clock at the write (same host clock):
  // an acknowledgement can arrive a moment after the kill for a write the old primary committed.
  const before = st.acks.filter((a) => a.writtenAt <= lostAt);
  const after = st.acks.filter((a) => a.writtenAt > lostAt);
  const missingBeyondRpo = before.filter((a) => a.ackedAt <= lostAt - rpoSeconds * 1000 && !got.has(a.key)).map((a) => a.key);
  const missingWithinRpo = before.filter((a) => a.ackedAt > lostAt - rpoSeconds * 1000 && !got.has(a.key)).length;
  const newestHeld = [...before].reverse().find((a) => got.has(a.key));
  return {
    service: s.name,
    engine: s.engine,
    rpoTargetSeconds: rpoSeconds,
    acknowledgedBeforeLoss: before.length,
    missingBeyondRpo,
    missingWithinRpo,
    dataLossSeconds: newestHeld ? Math.max(0, (lostAt - newestHeld.writtenAt) / 1000) : null,
    writesAfterFailover: after.length,
    missingAfterFailover: after.filter((a) => !got.has(a.key)).map((a) => a.key),
  };
}

export async function runFailoverDrill(run: DrillRun, opts: { keep?: boolean }, phases: FailoverReport["phases"]): Promise<FailoverReport> {
  const { platform, failures, log } = run;
  run.services = run.services.filter((s) => s.engine === "postgres" || s.engine === "redis");
  if (readState(LOCAL_DR_STACK, run.stateDir)) {
    await run.phase(`remove the previous ${LOCAL_DR_STACK} deployment`, () => destroy({ stack: LOCAL_DR_STACK, stateDir: run.stateDir, force: true, log: (l) => log(`  ${l}`) }));
  }
  await clearPreviousDrill(run);
  await deployLocal(run);
  const db = new pg.Pool({ host: platform.catalog.host, port: platform.catalog.port, user: platform.catalog.user, password: platform.catalog.password, database: "kryonix_dr", max: 2 });
  db.on("error", () => undefined);
  const clients = new Map<string, { id: string; dir: string }>();
  let regionStopped = false;
  // Stopped in `finally` too: writers left running on a failed drill kept it from ever exiting.
  let writers = new Map<string, Writer>();
  const more: Writer[] = [];
  /** The writers stop and the client containers go; they sit on the local stack's network, so before its destroy. */
  const release = async () => {
    await Promise.all([...writers.values(), ...more].map((w) => w.stop()));
    for (const c of clients.values()) await removeClient(c);
    clients.clear();
  };
  try {
    await waitForServices(run);
    const network = `${run.prefix}-net`;
    const secrets = generatedSecrets(LOCAL_STACK, run.stateDir);
    for (const s of run.services) clients.set(s.name, await startClient(run, s.name, network, s.passwordKey ? secrets[s.passwordKey] : undefined));
    writers = new Map(run.services.map((s) => [s.name, new Writer(s.engine, clients.get(s.name)!.id, run.runId, s.dataPath, 200, s.name)]));
    let writesStart = 0;
    await run.phase("write through the stable names, and take backups", async () => {
      for (const s of run.services) await prepare(s.engine, clients.get(s.name)!.id, s.name);
      writesStart = Date.now();
      for (const w of writers.values()) w.start();
      log(`  writing to ${run.services.map((s) => s.name).join(", ")} through those names from client containers on ${network}`);
      await watchBackups(db, run.tenantId, run.services, [...writers.values()], writesStart, 20, log);
    });
    await run.phase("wait for the DR region's copies", () => waitForCopies(run, db, writesStart));
    await run.phase(`deploy the ${LOCAL_DR_STACK} stack: warm standbys`, () => deployInChild(LOCAL_DR_STACK, run.projectDir, run.stateDir, drillDrConfig(run, false), log));
    let following = new Map<string, string>();
    await run.phase("the standbys follow the primaries", async () => {
      following = await waitForStandbys(run, writers, db, drStandbys(run));
    });

    await run.phase("activation refused while the primary answers", async () => {
      // The bad input first: promoting a standby of a healthy primary would split the data.
      const refused = await deployInChild(LOCAL_DR_STACK, run.projectDir, run.stateDir, drillDrConfig(run, true), () => undefined).then(
        () => undefined,
        (e: Error) => e.message,
      );
      if (!refused) throw new Error("the activation went ahead although the primaries answer: it must refuse without force");
      if (!/the primary still answers/.test(refused)) throw new Error(`the activation failed, but not for the primary answering: ${refused.slice(-1500)}`);
      for (const s of run.services) {
        const labels = (await stackServices(LOCAL_DR_STACK)).find((x) => x.name === `${drPrefix(run)}-${s.name}`)?.labels ?? {};
        if (labels[LABELS.role] !== "standby") throw new Error(`${s.name}: after the refused activation its standby is labelled ${labels[LABELS.role] ?? "(missing)"}, not standby: the refusal moved something`);
      }
      log(`  refused, nothing moved: ${/the primary still answers \([^)]*\)/.exec(refused)?.[0] ?? "the primary still answers"}`);
    });
    let lostAt = 0;
    let regionGone: Promise<void> = Promise.resolve();
    await run.phase("disaster: lose the primary region (services killed and removed; its S3 server and sidecars go meanwhile)", async () => {
      regionStopped = true;
      ({ lostAt, rest: regionGone } = await loseThePrimaryRegion(run));
    });
    await run.phase(`fail over: deploy ${LOCAL_DR_STACK} with kryonix-dr:active true`, () => deployInChild(LOCAL_DR_STACK, run.projectDir, run.stateDir, drillDrConfig(run, true), log));
    const failoverSeconds = new Map<string, number | null>();
    await run.phase("writes resume through the same names", async () => {
      const deadline = Date.now() + 120_000;
      for (const s of run.services) {
        const w = writers.get(s.name)!;
        for (;;) {
          const first = w.stats.acks.find((a) => a.writtenAt > lostAt);
          if (first) {
            failoverSeconds.set(s.name, (first.ackedAt - lostAt) / 1000);
            log(`  ${s.name}: first write through '${s.name}' acknowledged ${((first.ackedAt - lostAt) / 1000).toFixed(1)} s after the loss (${w.stats.failures} writes failed meanwhile)`);
            break;
          }
          if (Date.now() > deadline) {
            failoverSeconds.set(s.name, null);
            failures.push(`${s.name}: no write through '${s.name}' succeeded within 120 s of the activation: ${w.stats.lastError ?? ""}`);
            break;
          }
          await sleep(500);
        }
      }
      await sleep(5000);
    });
    await run.phase("the rest of the primary region gone (S3 server stopped, sidecars removed)", () => regionGone);
    const written = new Map<string, WriterStats>();
    for (const [name, w] of writers) written.set(name, await w.stop());

    const reports: FailoverServiceReport[] = [];
    await run.phase("verify the promoted services", async () => {
      for (const s of run.services) {
        const got = await readBack(s.engine, clients.get(s.name)!.id, run.runId, s.dataPath, s.name);
        const rep: FailoverServiceReport = { ...judge(s, written.get(s.name)!, got, lostAt, s.rpoSeconds), followedBefore: following.get(s.name) ?? null, failoverSeconds: failoverSeconds.get(s.name) ?? null };
        reports.push(rep);
        log(
          `  ${s.name}: ${rep.acknowledgedBeforeLoss - rep.missingBeyondRpo.length - rep.missingWithinRpo}/${rep.acknowledgedBeforeLoss} writes from before the loss held ` +
            `(${rep.missingWithinRpo} lost within the RPO of ${rep.rpoTargetSeconds} s, ${rep.missingBeyondRpo.length} beyond it), data loss ${rep.dataLossSeconds?.toFixed(1) ?? "?"} s; ` +
            `${rep.writesAfterFailover - rep.missingAfterFailover.length}/${rep.writesAfterFailover} writes after the failover held; failover ${rep.failoverSeconds?.toFixed(1) ?? "-"} s`,
        );
        if (rep.missingBeyondRpo.length) failures.push(`${s.name}: ${rep.missingBeyondRpo.length} write(s) acknowledged more than ${rep.rpoTargetSeconds} s before the loss are missing (e.g. ${rep.missingBeyondRpo.slice(0, 3).join(", ")})`);
        if (rep.missingAfterFailover.length) failures.push(`${s.name}: ${rep.missingAfterFailover.length} write(s) acknowledged by the promoted service are missing`);
        if (rep.failoverSeconds !== null && rep.failoverSeconds > FAILOVER_TARGET_SECONDS) failures.push(`${s.name}: failover took ${rep.failoverSeconds.toFixed(1)} s, over ${FAILOVER_TARGET_SECONDS} s`);
      }
    });
    await run.phase("the DR sidecars' first backups of the promoted services, verified", async () => {
      const deadline = Date.now() + 240_000;
      for (const rep of reports) {
        for (;;) {
          const { rows } = await db.query<{ backup_id: string; backup_type: string; verify_status: string | null }>(
            `SELECT backup_id, backup_type, verify_status FROM backup_management WHERE tenant_id = $1 AND service_name = $2 AND storage_region = $3
               AND backup_status = 'completed' AND backup_type <> 'wal' AND created_at > $4 ORDER BY verify_status = 'passed' DESC, created_at DESC LIMIT 1`,
            [run.tenantId, rep.service, platform.regions.dr.name, new Date(lostAt)],
          );
          const b = rows[0];
          if (b?.verify_status === "passed" || b?.verify_status === "failed") {
            rep.drBackup = { backupId: b.backup_id, type: b.backup_type, verifyStatus: b.verify_status };
            log(`  ${rep.service}: ${b.backup_type} backup ${b.backup_id.slice(0, 8)} in the DR region, verify ${b.verify_status}`);
            if (b.verify_status !== "passed") failures.push(`${rep.service}: the promoted service's first DR backup ${b.backup_id} failed verification`);
            break;
          }
          if (Date.now() > deadline) {
            failures.push(`${rep.service}: no verified backup of the promoted service in the DR region within 240 s${b ? ` (backup ${b.backup_id} not verified yet)` : ""}: see 'docker service logs ${drPrefix(run)}-${rep.service}-backup'`);
            break;
          }
          await sleep(5000);
        }
      }
    });

    await run.phase("runbook §9b's checks: the promoted PostgreSQL is out of recovery, and deploying again with active true changes nothing", async () => {
      for (const s of run.services.filter((x) => x.engine === "postgres")) {
        const r = await dockerExec(await waitForTask(`${drPrefix(run)}-${s.name}`, 60_000, false), ["psql", "-U", "postgres", "-Atc", "SELECT pg_is_in_recovery()"], 30_000);
        if (r.stdout.trim() !== "f") failures.push(`${s.name}: the promoted PostgreSQL answers pg_is_in_recovery() = '${r.stdout.trim()}' (${r.stderr.trim()}), not f`);
      }
      let summary = "";
      await deployInChild(LOCAL_DR_STACK, run.projectDir, run.stateDir, { active: { value: true } }, (l) => {
        if (/update of stack/.test(l)) summary = l.trim();
        log(l);
      });
      if (!/ 0 updated in place, 0 replaced, 0 created, 0 deleted/.test(summary)) failures.push(`deploying ${LOCAL_DR_STACK} again with active true changed something: ${summary || "it printed no update summary"}`);
    });

    const activations = (
      await db.query<{ recovery_id: string; affected_services: string[]; seconds: number | null; phase_timings: Record<string, number> }>(
        `SELECT recovery_id, affected_services, extract(epoch FROM actual_recovery_time)::float AS seconds, phase_timings FROM disaster_recovery_log
          WHERE tenant_id = $1 AND incident_type = 'failover' AND initiated_at >= $2 ORDER BY initiated_at`,
        [run.tenantId, new Date(lostAt)],
      )
    ).rows.map((r) => ({ recoveryId: r.recovery_id, service: r.affected_services[0]!, seconds: r.seconds, phases: r.phase_timings }));
    for (const s of run.services) if (!activations.some((a) => a.service === s.name)) failures.push(`${s.name}: the activation recorded no failover in disaster_recovery_log`);

    const worst = (xs: Array<number | null>) => Math.max(0, ...xs.filter((x): x is number => x !== null));
    const row = await cat.startRecovery(db, {
      tenantId: run.tenantId,
      incidentType: "drill",
      affectedServices: run.services.map((s) => s.name),
      procedure: "kryonix-dr drill --disaster failover: warm standbys promoted by kryonix-dr:active true on the local-dr stack",
      target: "latest",
      rtoTargetSeconds: FAILOVER_TARGET_SECONDS,
      rpoTargetSeconds: Math.min(...run.services.map((s) => s.rpoSeconds)),
      initiatedAt: new Date(lostAt),
      metadata: { runId: run.runId, disaster: "failover" },
    });
    const finished = await cat.finishRecovery(db, row.recoveryId, {
      status: failures.length ? "failed" : "completed",
      ...(failures.length ? { error: failures.join("; ") } : {}),
      actualRecoverySeconds: worst(reports.map((r) => r.failoverSeconds)),
      dataLossSeconds: worst(reports.map((r) => r.dataLossSeconds)),
      phaseTimings: Object.fromEntries(phases.map((p) => [p.name, Math.round(p.seconds * 10) / 10])),
      notes: JSON.stringify(reports.map((r) => ({ service: r.service, failoverSeconds: r.failoverSeconds, dataLossSeconds: r.dataLossSeconds, missingBeyondRpo: r.missingBeyondRpo.length }))),
    });
    const report: FailoverReport = {
      ok: failures.length === 0,
      runId: run.runId,
      disaster: "failover",
      startedAt: iso(run.startedAt),
      finishedAt: "",
      lostAt: iso(lostAt),
      phases,
      services: reports,
      activations,
      recoveryLog: { recoveryId: finished.recoveryId, status: finished.recoveryStatus, actualRecoverySeconds: finished.actualRecoverySeconds, dataLossSeconds: finished.dataLossSeconds },
      failures,
      kept: !!opts.keep,
    };
    await run.phase("bring the primary region back", () => setRegion("start", "primary", run.projectDir, log));
    regionStopped = false;
    await run.phase("replication reversed: the promoted services' DR backups reach the primary region", async () => {
      const back = Date.now();
      const origin = new URL(platform.regions.primary.endpoint).origin;
      for (const rep of reports) {
        if (!rep.drBackup) continue;
        for (;;) {
          const { rows } = await db.query<{ artifacts: number; copied: number }>(
            `SELECT count(*)::int AS artifacts, count(c.copy_version_id)::int AS copied FROM backup_artifact a
               LEFT JOIN object_copy c ON c.endpoint = $2 AND c.object_key = a.object_key AND c.source_version_id = a.version_id
              WHERE a.backup_id = $1`,
            [rep.drBackup.backupId, origin],
          );
          const { artifacts, copied } = rows[0]!;
          if (artifacts > 0 && copied === artifacts) {
            rep.reversedAfterSeconds = (Date.now() - back) / 1000;
            log(`  ${rep.service}: its DR backup ${rep.drBackup.backupId.slice(0, 8)} copied back to the primary region (${copied} object(s)), ${rep.reversedAfterSeconds.toFixed(1)} s after it returned`);
            await statusAfterReversal(run, db, rep.service, failures);
            break;
          }
          if (Date.now() - back > 180_000) {
            rep.reversedAfterSeconds = null;
            failures.push(`${rep.service}: its DR backup ${rep.drBackup.backupId} was not copied back to the primary region within 180 s of its return (${copied}/${artifacts} object(s)): see 'docker service logs' of the ${LOCAL_DR_STACK} stack's replicators`);
            break;
          }
          await sleep(3000);
        }
      }
      report.ok = failures.length === 0;
    });
    report.failback = await runFailback(run, { db, clients, track: (w) => more.push(w) });
    report.ok = failures.length === 0;
    if (!opts.keep) {
      await run.phase(`clean up: destroy the ${LOCAL_DR_STACK} and local stacks`, async () => {
        await release();
        for (const stack of [LOCAL_DR_STACK, LOCAL_STACK]) await destroy({ stack, stateDir: run.stateDir, force: true, log: (l) => log(`  ${l}`) });
        rmSync(run.marker, { force: true });
      });
    }
    report.finishedAt = iso(Date.now());
    return report;
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(`${msg}\n(the drill's stacks are left as they are for inspection; the next drill removes them, or run 'kryonix-dr destroy --stack ${LOCAL_DR_STACK} --force' and 'kryonix-dr destroy --stack ${LOCAL_STACK} --force')`);
  } finally {
    await release();
    await db.end().catch(() => undefined);
    if (regionStopped) await setRegion("start", "primary", run.projectDir, log).catch((e: Error) => log(`  could not bring the primary region back: ${e.message}; run 'bash scripts/region.sh start primary'`));
  }
}
