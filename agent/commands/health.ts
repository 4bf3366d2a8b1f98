/** `kdr-agent health`: the age of the newest verified recovery point against the RPO. */
import type pg from "pg";
import * as cat from "../catalog.js";
import type { Settings } from "../config.js";
import { m } from "../metrics.js";
import { fmtSeconds } from "../storage/progress.js";

export interface HealthSummary {
  service: string;
  healthy: boolean;
  rpoTargetSeconds: number;
  /** Seconds since the newest verified recovery point (verified base + contiguous WAL), or null. */
  ageSeconds: number | null;
  message: string;
}

export async function runHealth(s: Settings, c: pg.Client): Promise<HealthSummary> {
  const service = s.service;
  const rpo = s.rpoSeconds;
  const age = await cat.rpoSeconds(c, service, { tenantId: s.tenantId });
  m.rpoTarget.set({ service }, rpo);
  if (age !== null) m.rpo.set({ service }, age);
  const healthy = age !== null && age <= rpo;
  return {
    service,
    healthy,
    rpoTargetSeconds: rpo,
    ageSeconds: age === null ? null : Math.round(age),
    message:
      age === null
        ? `STALE: '${service}' has no verified backup; run 'kdr-agent backup --type full' then 'kdr-agent verify'.`
        : healthy
          ? `ok: the newest verified recovery point of '${service}' is ${fmtSeconds(age)} old (RPO ${fmtSeconds(rpo)})`
          : `STALE: the newest verified recovery point of '${service}' is ${fmtSeconds(age)} old, over the RPO of ${fmtSeconds(rpo)}: check the schedule and the last runs ('kdr-agent list'), then verify.`,
  };
}
