/**
 * What a mapping is: one Pulumi resource type, created for real from the SAME inputs the real
 * provider would receive, and destroyed from what it recorded.
 */
import type { Registration } from "../program.js";

export interface DeployContext {
  stack: string;
  /** Connection settings of the resource's provider (explicit provider inputs, else `<pkg>:*` config). */
  provider: Record<string, unknown>;
  /** Label put on every Docker object the deployer creates, so a leftover can be traced to its stack. */
  labels: Record<string, string>;
  /** Objects recorded earlier in this deployment (e.g. an IamPolicy's document for its attachment). */
  lookup(type: string, predicate: (state: Record<string, unknown>) => boolean): Record<string, unknown> | undefined;
  log(line: string): void;
}

export interface Created {
  /** The id the real provider would return. */
  id: string;
  /** Outputs the real provider computes (generated names, keys): merged into the resource's outputs. */
  state?: Record<string, unknown>;
  /** What destroy needs; written to the deployment state file. */
  record: Record<string, unknown>;
}

export interface Mapping<I = Record<string, unknown>> {
  readonly type: string;
  create(inputs: I, ctx: DeployContext, reg: Omit<Registration, "id">): Promise<Created>;
  /**
   * Outputs the real provider computes that the program reads back (generated names, keys), as
   * placeholders for the offline plan, so a plan walks the same code paths as a deployment.
   */
  plan?(inputs: I, reg: Omit<Registration, "id">): Record<string, unknown>;
  /**
   * Changes an existing object to new inputs in place (a deployment's update), from what create
   * recorded. Absent: a changed resource is replaced (destroyed, then created).
   */
  update?(record: Record<string, unknown>, inputs: I, ctx: DeployContext, reg: Omit<Registration, "id">): Promise<Created>;
  /** With update: whether these new inputs need a replacement all the same (a command's `triggers`). */
  replaces?(record: Record<string, unknown>, inputs: I): boolean;
  /** Removes what create made; must succeed when it is already gone (destroy can be re-run). */
  destroy(record: Record<string, unknown>, provider: Record<string, unknown>): Promise<void>;
}

/** Pulumi's auto-naming: the logical name plus a random suffix, when the program gives no name. */
export function autoName(logical: string, explicit: unknown): string {
  if (typeof explicit === "string" && explicit !== "") return explicit;
  return `${logical}-${Math.random().toString(16).slice(2, 9)}`;
}

/** Docker/Terraform-style `[{label, value}]` lists as a map. */
export function labelList(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of Array.isArray(v) ? v : []) {
    const o = item as { label?: string; value?: string };
    if (typeof o.label === "string") out[o.label] = String(o.value ?? "");
  }
  return out;
}

/** Go duration strings as the provider takes them ("10s", "1m30s", "500ms") in nanoseconds. */
export function durationNs(v: unknown, field: string): number | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v === "number") return v;
  const s = String(v);
  const units: Record<string, number> = { ns: 1, us: 1e3, "µs": 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  let total = 0;
  let rest = s;
  const re = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/;
  if (s === "0") return 0;
  while (rest.length > 0) {
    const m = re.exec(rest);
    if (!m) throw new Error(`${field} is '${s}', which is not a duration: write it like 10s, 1m30s or 500ms.`);
    total += Number(m[1]) * units[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return Math.round(total);
}

/** Drops undefined fields so the APIs see only what the program set. */
export function compact<T extends Record<string, unknown>>(o: T): T {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Runs fn over items, at most `limit` at a time. */
export async function mapLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** A FIFO mutex: `run` calls never overlap. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn);
    this.tail = result.catch(() => {});
    return result;
  }
}

/**
 * RGW (Pacific) updates bucket metadata read-modify-write: two configuration writes to one
 * bucket at the same time (policy, lifecycle, versioning, object lock) can silently lose one of
 * them. Bucket configuration mappings, and local commands (which may configure buckets, e.g.
 * default retention), therefore take turns. MinIO does not need this; it costs seconds here.
 */
export const bucketConfigTurns = new Mutex();
