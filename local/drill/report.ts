/** The drill report as people read it. */
import type { DrillReport } from "./drill.js";
import { FAILOVER_TARGET_SECONDS, type FailoverReport } from "./failover.js";

const s1 = (n: number | undefined) => (n === undefined ? "-" : `${n.toFixed(1)} s`);

export function formatReport(r: DrillReport): string {
  const lines: string[] = [];
  lines.push(`kryonix-dr drill ${r.runId}: ${r.ok ? "PASSED" : "FAILED"} (${r.stack === "prod" ? "the prod stack's services; " : ""}recovery point: ${r.target}${r.disaster === "region" ? "; disaster: the whole primary region" : ""}${r.dataSizeMiB ? `; ${r.dataSizeMiB} MiB seeded per service` : ""})`, "");
  lines.push("Phases:");
  const w = Math.max(...r.phases.map((p) => p.name.length));
  for (const p of r.phases) lines.push(`  ${p.name.padEnd(w)}  ${s1(p.seconds).padStart(8)}`);
  lines.push("");
  lines.push(`RTO: ${s1(r.rto.seconds)} from disaster declared (${r.rto.declaredAt}) to verified data (${r.rto.verifiedAt}); target ${r.rto.targetSeconds} s: ${r.rto.met ? "met" : "MISSED"}`);
  lines.push("", "Per service:");
  for (const s of r.services) {
    lines.push(
      `  ${s.service} (${s.engine}): restored from backup ${s.restoredFromBackup ?? "?"} to ${s.recoveryPoint ?? "?"}`,
      `    writes ${s.writes} acknowledged (${s.failedWrites} failed); expected back ${s.expected}, back ${s.restored}, missing ${s.missing.length}, changed ${s.corrupted.length}${r.target === "latest" ? "" : `, after the point ${s.unexpected.length}`}, straddling the point ${s.straddling}`,
      `    last acknowledged write ${s.lastAcknowledgedWrite ?? "-"}, newest restored ${s.newestRestoredWrite ?? "-"}`,
      `    RPO (data loss) ${s1(s.dataLossSeconds)}; target ${s.rpoTargetSeconds} s: ${s.rpoMet ? "met" : "MISSED"}` +
        (s.recoverySeconds !== undefined ? `; RTO ${s1(s.recoverySeconds)}, ${s.priority} target ${s.rtoTargetSeconds} s: ${s.rtoMet ? "met" : "MISSED"}` : ""),
    );
    if (s.seed) lines.push(`    seed data ${(s.seed.bytes / 2 ** 20).toFixed(0)} MiB: ${s.seed.matched ? `back whole (${s.seed.restoredFingerprint})` : `DIFFERS: ${s.seed.restoredFingerprint}, seeded ${s.seed.fingerprint}`}`);
  }
  const byKind = new Map<string, number>();
  for (const b of r.backups) byKind.set(`${b.service} ${b.type} ${b.status}`, (byKind.get(`${b.service} ${b.type} ${b.status}`) ?? 0) + 1);
  lines.push("", `Backups during the drill: ${[...byKind].map(([k, n]) => `${k} x${n}`).join(", ") || "none"}; WAL segments uploaded: ${r.walSegments}`);
  for (const b of r.backups.filter((b) => b.status === "failed")) lines.push(`  failed: ${b.service} ${b.type} ${b.backupId}: ${b.error ?? "no error recorded"}`);
  for (const [stack, d] of Object.entries(r.deployments)) {
    lines.push(`Stack ${stack}: ${d.deployed.length} resources deployed, ${d.declared.length} declared${d.missing.length || d.extra.length ? ` (DIFFER: not created ${d.missing.join(", ")}; not declared ${d.extra.join(", ")})` : ", identical"}`);
  }
  if (r.disaster === "region") {
    lines.push(`DR copies when the region was lost: ${(r.replicationLag ?? []).map((l) => `${l.service} newest copied object from ${l.newestCopiedSourceAt ?? "-"} (${l.copies} objects)`).join("; ") || "none"}`);
    const cr = r.catalog?.restore;
    if (cr) lines.push(`Catalog restored from the DR region: backup ${cr.backupId} of the catalog server, replayed to ${cr.reaches} (${cr.restoredRows.backups} backup(s), ${cr.restoredRows.recoveryLog} recovery log entr(ies)) in ${cr.durationSeconds.toFixed(1)} s; then rebuilt what is newer:`);
    for (const c of r.catalog?.rebuild ?? []) lines.push(`Catalog rebuilt from ${c.bucket}: ${c.backups.inserted} backup(s), ${c.walSegments.inserted} WAL segment(s); skipped ${c.skipped.length}${c.skipped.length ? ` (${c.skipped.map((x) => `${x.key}: ${x.reason}`).join("; ")})` : ""}`);
  }
  if (r.recoveryLog) {
    const l = r.recoveryLog;
    lines.push(`disaster_recovery_log ${l.recoveryId}: ${l.status}, recovery ${l.actualRecoverySeconds?.toFixed(1) ?? "-"} s, data loss ${l.dataLossSeconds?.toFixed(1) ?? "-"} s, RTO met ${l.rtoMet}, RPO met ${l.rpoMet}${r.kept ? "" : " (the catalog went with the local stack; the report file keeps it)"}`);
  }
  if (r.reportFile) lines.push(`Report: ${r.reportFile}`);
  if (r.failures.length) lines.push("", "Failures:", ...r.failures.map((f) => `  - ${f}`));
  lines.push("", r.kept ? "Kept both stacks (--keep): remove them with 'kryonix-dr destroy --stack recovery --force' then 'kryonix-dr destroy --stack local --force'." : "Both stacks destroyed.");
  return lines.join("\n");
}

export function formatFailoverReport(r: FailoverReport): string {
  const lines: string[] = [`kryonix-dr drill ${r.runId}: ${r.ok ? "PASSED" : "FAILED"} (disaster: the primary region lost, the warm standbys promoted at ${r.lostAt})`, "", "Phases:"];
  const w = Math.max(...r.phases.map((p) => p.name.length));
  for (const p of r.phases) lines.push(`  ${p.name.padEnd(w)}  ${s1(p.seconds).padStart(8)}`);
  lines.push("", "Per service (writes through the stable name, before and after the loss):");
  for (const s of r.services) {
    lines.push(
      `  ${s.service} (${s.engine}): failover ${s1(s.failoverSeconds ?? undefined)} from the loss to the first write on the promoted service (target ${FAILOVER_TARGET_SECONDS} s)`,
      `    before the loss: ${s.acknowledgedBeforeLoss} acknowledged, ${s.missingBeyondRpo.length} missing beyond the RPO of ${s.rpoTargetSeconds} s, ${s.missingWithinRpo} lost within it; data loss ${s1(s.dataLossSeconds ?? undefined)}`,
      `    after the failover: ${s.writesAfterFailover} acknowledged, ${s.missingAfterFailover.length} missing`,
      `    first backup in the DR region: ${s.drBackup ? `${s.drBackup.type} ${s.drBackup.backupId}, verify ${s.drBackup.verifyStatus}` : "none"}`,
    );
    if (s.reversedAfterSeconds !== undefined) {
      lines.push(`    replication reversed: ${s.reversedAfterSeconds === null ? "that backup did not reach the primary region" : `that backup reached the primary region ${s1(s.reversedAfterSeconds)} after it returned`}`);
    }
  }
  if (r.failback) {
    lines.push("", `The way back (failback, generation ${r.failback.generation}):`);
    for (const f of r.failback.services) {
      lines.push(
        `  ${f.service} (${f.engine}): returned as ${f.returned}, followed the promoted service by ${f.followedBefore ?? "-"}; hand-over ${s1(f.handover?.seconds ?? undefined)}${f.handover ? ` (${Object.entries(f.handover.phases).map(([k, v]) => `${k} ${v.toFixed(1)} s`).join(", ")})` : ""}`,
        `    writes through the stable name: ${f.writesDuring} acknowledged during the failback (${f.writesFailedDuring} failed), longest pause from the switch on ${s1(f.longestWriteGapSeconds ?? undefined)}; ${f.missing.length} missing on the returned service`,
        `    backed up again ${s1(f.backedUpAfterSeconds ?? undefined)} after the switch; the DR region's new standby: ${f.drStandby ?? "-"}`,
      );
    }
  }
  for (const a of r.activations) lines.push(`Activation of ${a.service}: ${s1(a.seconds ?? undefined)} (${Object.entries(a.phases).map(([k, v]) => `${k} ${v.toFixed(1)} s`).join(", ")}), disaster_recovery_log ${a.recoveryId}`);
  if (r.recoveryLog) lines.push(`disaster_recovery_log ${r.recoveryLog.recoveryId} (the drill): ${r.recoveryLog.status}, failover ${r.recoveryLog.actualRecoverySeconds?.toFixed(1) ?? "-"} s, data loss ${r.recoveryLog.dataLossSeconds?.toFixed(1) ?? "-"} s`);
  if (r.reportFile) lines.push(`Report: ${r.reportFile}`);
  if (r.failures.length) lines.push("", "Failures:", ...r.failures.map((f) => `  - ${f}`));
  lines.push("", r.kept ? "Kept both stacks (--keep): remove them with 'kryonix-dr destroy --stack local-dr --force' then 'kryonix-dr destroy --stack local --force'." : "Both stacks destroyed; the primary region is running again.");
  return lines.join("\n");
}
