/** Policy "schedule-meets-rpo". */
import { AGENT_ENV, LABELS } from "../../contract/index.js";
import { describe, engineOf, isSecret, services, setting, str } from "../model.js";
import { cronError, worstGapSeconds, humanDuration as human } from "../../contract/schedule.js";
import { define, type Finding } from "../define.js";
import { opaqueFinding, backupProtections, positiveNumber } from "../shared.js";

export const scheduleMeetsRpo = define<{ walMarginSeconds: number }>({
  name: "schedule-meets-rpo",
  description: "Each service's backup schedule or continuous mechanism can meet its declared RPO.",
  defaults: { walMarginSeconds: 30 },
  schema: {
    walMarginSeconds: { type: "number", minimum: 0, description: `Time to ship a switched WAL segment, added to ${AGENT_ENV.walSwitchSeconds}.` },
  },
  check(resources, cfg) {
    const out: Finding[] = [];
    for (const p of backupProtections(services(resources))) {
      const rpo = positiveNumber(setting(AGENT_ENV.rpoSeconds, LABELS.rpoSeconds, p.sidecar, p.target));
      if (rpo === undefined) continue; // protected-service-declares-rpo-rto reports it
      if (p.sidecar.opaque) {
        out.push(opaqueFinding(p));
        continue;
      }
      const who = `Backup sidecar "${p.sidecar.name}" (${describe(p.sidecar.resource)}) of "${p.protects}"`;
      const engine = engineOf(p);
      const wal = positiveNumber(str(p.sidecar.env[AGENT_ENV.walSwitchSeconds]));
      if (engine === "postgres" && wal !== undefined) {
        if (wal + cfg.walMarginSeconds > rpo) {
          out.push({
            resource: p.sidecar.resource,
            message:
              `${who} switches WAL every ${wal} s; with ${cfg.walMarginSeconds} s to ship a segment that is ${wal + cfg.walMarginSeconds} s of possible loss, over its RPO of ${rpo} s. ` +
              `Fix: set ${AGENT_ENV.walSwitchSeconds} to at most ${Math.max(1, rpo - cfg.walMarginSeconds)}, or raise the RPO.`,
          });
        }
        continue;
      }
      const patterns: string[] = [];
      for (const key of [AGENT_ENV.scheduleFull, AGENT_ENV.scheduleIncremental]) {
        const v = p.sidecar.env[key];
        if (typeof v === "string" && v !== "" && !isSecret(v) && cronError(v) === undefined) patterns.push(v);
      }
      const walHint = engine === "postgres" ? `set ${AGENT_ENV.walSwitchSeconds} (continuous WAL) to at most ${Math.max(1, rpo - cfg.walMarginSeconds)}, or ` : "";
      if (patterns.length === 0) {
        out.push({
          resource: p.sidecar.resource,
          message: `${who} has no valid backup schedule, so nothing meets its RPO of ${rpo} s. Fix: ${walHint}set ${AGENT_ENV.scheduleFull} / ${AGENT_ENV.scheduleIncremental} to cron expressions that run at least every ${human(rpo)}.`,
        });
        continue;
      }
      const gap = worstGapSeconds(patterns);
      if (gap > rpo) {
        out.push({
          resource: p.sidecar.resource,
          message:
            `${who} can go ${human(gap)} between backups (${patterns.map((x) => `"${x}"`).join(" + ")}), over its RPO of ${human(rpo)}. ` +
            `Fix: ${walHint}schedule ${AGENT_ENV.scheduleIncremental} at least every ${human(rpo)}, or raise the RPO.`,
        });
      }
    }
    return out;
  },
});
