/** Policy "retention-covers-two-full-backups". */
import { AGENT_ENV } from "../../contract/index.js";
import { describe, isSecret, services } from "../model.js";
import { cronError, worstGapSeconds, humanDuration as human } from "../../contract/schedule.js";
import { define, type Finding } from "../define.js";
import { opaqueFinding, backupProtections, positiveNumber } from "../shared.js";

export const retentionCoversFulls = define<{ minFullBackups: number }>({
  name: "retention-covers-two-full-backups",
  description: "Each service's retention covers at least two full-backup intervals.",
  defaults: { minFullBackups: 2 },
  schema: { minFullBackups: { type: "number", minimum: 1, description: "Full backups the retention must keep." } },
  check(resources, cfg) {
    const out: Finding[] = [];
    for (const p of backupProtections(services(resources))) {
      if (p.sidecar.opaque) {
        out.push(opaqueFinding(p));
        continue;
      }
      const who = `Backup sidecar "${p.sidecar.name}" (${describe(p.sidecar.resource)}) of "${p.protects}"`;
      const schedule = p.sidecar.env[AGENT_ENV.scheduleFull];
      const retention = p.sidecar.env[AGENT_ENV.retentionFullDays];
      if (typeof schedule !== "string" || schedule === "" || isSecret(schedule)) {
        out.push({
          resource: p.sidecar.resource,
          message: `${who} has no full-backup schedule (${AGENT_ENV.scheduleFull} is ${schedule === undefined ? "unset" : JSON.stringify(schedule)}). Fix: set ${AGENT_ENV.scheduleFull} to a cron expression, e.g. "0 2 * * *".`,
        });
        continue;
      }
      const err = cronError(schedule);
      if (err) {
        out.push({ resource: p.sidecar.resource, message: `${who} has an invalid ${AGENT_ENV.scheduleFull} "${schedule}": ${err}. Fix: use a 5- or 6-field cron expression.` });
        continue;
      }
      const days = positiveNumber(typeof retention === "string" ? retention : retention === undefined ? undefined : String(retention));
      if (days === undefined) {
        out.push({
          resource: p.sidecar.resource,
          message: `${who} declares no full-backup retention (${AGENT_ENV.retentionFullDays} is ${retention === undefined ? "unset" : JSON.stringify(retention)}). Fix: set ${AGENT_ENV.retentionFullDays} to a whole number of days.`,
        });
        continue;
      }
      const interval = worstGapSeconds([schedule]);
      const need = cfg.minFullBackups * interval;
      if (days * 86400 < need) {
        out.push({
          resource: p.sidecar.resource,
          message:
            `${who} keeps full backups ${days} days but "${schedule}" runs every ${human(interval)} at worst, so fewer than ${cfg.minFullBackups} full backups are kept. ` +
            `Fix: set ${AGENT_ENV.retentionFullDays} to at least ${Math.ceil(need / 86400)}, or schedule full backups more often.`,
        });
      }
    }
    return out;
  },
});
