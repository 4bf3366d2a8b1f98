/**
 * Drift of a local deployment: every resource observed now (local/observe.ts) against what it was
 * when its deployment completed. A change made outside the program (a service scaled by hand, a
 * bucket's versioning suspended, a lifecycle rule deleted, a user's keys rotated by hand) is
 * reported with the property, the deployed value and the live one. Resource types without an
 * observer are counted as "not checked", never reported as clean.
 */
import { readState, statePath } from "./deployer.js";
import { observeEntries, type Observed } from "./observe.js";

export interface DriftChange {
  path: string;
  deployed: unknown;
  live: unknown;
}
export interface DriftedResource {
  type: string;
  name: string;
  id: string;
  /** changed: properties differ; deleted: the object is gone; unrecorded: deployed before observation existed. */
  kind: "changed" | "deleted" | "unrecorded";
  changes: DriftChange[];
}
export interface DriftReport {
  stack: string;
  checked: number;
  /** Resource type → how many were not checked (no observer for the type). */
  notChecked: Record<string, number>;
  drifted: DriftedResource[];
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Property differences, in the order of the deployed observation, then properties that appeared. */
export function diffObserved(deployed: Observed, live: Observed): DriftChange[] {
  const keys = [...Object.keys(deployed), ...Object.keys(live).filter((k) => !(k in deployed))];
  return keys.filter((k) => !same(deployed[k], live[k])).map((k) => ({ path: k, deployed: deployed[k], live: live[k] }));
}

export async function detectDrift(stack: string, stateDir?: string): Promise<DriftReport> {
  const state = readState(stack, stateDir);
  if (!state) throw new Error(`Stack '${stack}' has no local deployment (${statePath(stack, stateDir)} does not exist): deploy it first with 'kryonix-dr deploy --stack ${stack}'.`);
  if (state.status !== "deployed") {
    throw new Error(`Stack '${stack}' is not deployed (its last deployment is '${state.status}'${state.error ? `: ${state.error}` : ""}): a drift check needs a completed deployment; destroy and deploy it again.`);
  }
  const live = await observeEntries(state.resources, state.providers);
  const report: DriftReport = { stack, checked: 0, notChecked: {}, drifted: [] };
  for (const e of state.resources) {
    if (!live.has(e)) {
      report.notChecked[e.type] = (report.notChecked[e.type] ?? 0) + 1;
      continue;
    }
    report.checked++;
    const now = live.get(e);
    const base = { type: e.type, name: e.name, id: e.id };
    if (now === undefined) report.drifted.push({ ...base, kind: "deleted", changes: [] });
    else if (!e.observed) report.drifted.push({ ...base, kind: "unrecorded", changes: [] });
    else {
      const changes = diffObserved(e.observed, now);
      if (changes.length > 0) report.drifted.push({ ...base, kind: "changed", changes });
    }
  }
  return report;
}

function show(v: unknown): string {
  if (v === undefined) return "(not set)";
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return s.length > 160 ? `${s.slice(0, 157)}...` : s;
}

/** What changed in a list of strings, when both sides are one (env, mounts, keys). */
function listChange(c: DriftChange): string | undefined {
  if (!Array.isArray(c.deployed) || !Array.isArray(c.live)) return undefined;
  if (![...c.deployed, ...c.live].every((x) => typeof x === "string")) return undefined;
  const added = (c.live as string[]).filter((x) => !(c.deployed as string[]).includes(x));
  const removed = (c.deployed as string[]).filter((x) => !(c.live as string[]).includes(x));
  if (added.length + removed.length === 0) return undefined;
  return [...added.map((x) => `+${show(x)}`), ...removed.map((x) => `-${show(x)}`)].join(" ");
}

export function formatDrift(r: DriftReport): string {
  const lines: string[] = [];
  const skipped = Object.entries(r.notChecked).sort(([a], [b]) => a.localeCompare(b));
  const skippedCount = skipped.reduce((n, [, c]) => n + c, 0);
  for (const d of r.drifted) {
    if (d.kind === "deleted") lines.push(`DELETED  ${d.type} ${d.name} (${d.id}): it no longer exists`);
    else if (d.kind === "unrecorded") lines.push(`UNKNOWN  ${d.type} ${d.name} (${d.id}): deployed by a version that did not record its state; redeploy to check it`);
    else {
      lines.push(`CHANGED  ${d.type} ${d.name} (${d.id})`);
      for (const c of d.changes) lines.push(`    ${c.path}: ${listChange(c) ?? `${show(c.deployed)} -> ${show(c.live)}`}`);
    }
  }
  const verdict =
    r.drifted.length === 0
      ? `no drift: ${r.checked} resources of stack '${r.stack}' match what was deployed`
      : `DRIFT: ${r.drifted.length} of ${r.checked} checked resources of stack '${r.stack}' differ from what was deployed`;
  lines.push(verdict);
  if (skippedCount > 0) lines.push(`not checked (no way to observe them): ${skipped.map(([t, c]) => `${c} ${t}`).join(", ")}`);
  if (r.drifted.length > 0) lines.push(`to fix: undo the change by hand, or make it in the program and redeploy (kryonix-dr destroy --stack ${r.stack}, then deploy)`);
  return lines.join("\n");
}

