/**
 * The fast path's config: kryonix-dr:active and kryonix-dr:failover on the dr stack (warm standbys,
 * their promotion), kryonix-dr:failback on the primary stack (the way back). Each is refused, not
 * ignored, on a stack it does not belong to.
 */
import { PROJECT, type RawConfig, type Role, type ServiceSpec, type Specs, SECRET, type StandbySpec } from "./schema.js";
import { type Issues, positive } from "./values.js";

/** true/false, or the strings `pulumi config set` stores; undefined (with the issue added) otherwise. */
function flag(issues: Issues, key: string, value: unknown, how: string): boolean | undefined {
  if (value === undefined || value === false || value === "false") return false;
  if (value === true || value === "true") return true;
  issues.add(key, `must be true or false, got ${JSON.stringify(value)}: ${how}`);
  return undefined;
}

/** A set of standbys' number: a whole number from `min` on. */
function generation(issues: Issues, key: string, value: unknown, min: number): number {
  if (value === undefined) return min;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
    issues.add(key, `must be a whole number from ${min} on, got ${JSON.stringify(value)}: each new set of standbys takes the next one ('pulumi config set --path ${PROJECT}:${key} <n>')`);
    return min;
  }
  return value;
}

/** dr: kryonix-dr:active and kryonix-dr:failover; elsewhere both are refused, not ignored. */
export function parseFailover(issues: Issues, role: Role, raw: RawConfig, presentKeys: ReadonlySet<string>): Specs["failover"] {
  if (role !== "dr") {
    if (raw.active !== undefined) issues.add("active", `promotes the warm standbys of the dr stack; this is the ${role} stack: remove it here ('pulumi config rm ${PROJECT}:active') and set it on the dr stack`);
    if (raw.failover !== undefined) issues.add("failover", `declares the dr stack's warm standbys; this is the ${role} stack: move it to the dr stack's config`);
    return undefined;
  }
  const active = flag(issues, "active", raw.active, `'pulumi config set ${PROJECT}:active true' promotes the standbys`);
  const f = raw.failover ?? {};
  const standbys: StandbySpec[] = [];
  const seen = new Set<string>();
  for (const [i, s] of (f.standbys ?? []).entries()) {
    const key = `failover.standbys[${i}]`;
    if (!s.name || !/^[a-z][a-z0-9-]*$/.test(s.name)) {
      issues.add(`${key}.name`, `must be the primary's service name (lowercase letters, digits, '-'), got ${JSON.stringify(s.name)}`);
      continue;
    }
    if (seen.has(s.name)) issues.add(`${key}.name`, `'${s.name}' has two standbys: list each service once`);
    seen.add(s.name);
    if (s.engine !== "postgres" && s.engine !== "redis") {
      issues.add(`${key}.engine`, `a warm standby is a PostgreSQL standby or a Redis replica: use postgres or redis, got ${JSON.stringify(s.engine)} (other engines fail over by recovery from backups: the recovery stack)`);
      continue;
    }
    const passwordKey = SECRET.targetPassword(s.name);
    if (s.engine === "postgres" && !presentKeys.has(passwordKey)) {
      issues.add(passwordKey, `the PostgreSQL standby of '${s.name}' needs the primary's password: 'pulumi config set --secret ${PROJECT}:${passwordKey} <value>'`);
    }
    standbys.push({ name: s.name, engine: s.engine, primaryHost: s.primaryHost, passwordKey: presentKeys.has(passwordKey) ? passwordKey : undefined });
  }
  if (active && standbys.length === 0) issues.add("active", `there is no standby to promote: list them in ${PROJECT}:failover.standbys (or recover from backups with the recovery stack)`);
  return {
    active: active ?? false,
    force: f.force === true,
    catchUpSeconds: positive(issues, "failover.catchUpSeconds", f.catchUpSeconds, 60),
    generation: generation(issues, "failover.generation", f.generation, 1),
    standbys,
  };
}

/**
 * prod/local: kryonix-dr:failback, the way back after the dr stack took over. Each listed service
 * of this stack returns as a standby of its promoted counterpart (named by the dr stack), and
 * `switch: true` hands over to it. Refused on the dr and recovery stacks.
 */
export function parseFailback(issues: Issues, role: Role, raw: RawConfig, services: ServiceSpec[]): Specs["failback"] {
  if (raw.failback === undefined) return undefined;
  if (role !== "prod" && role !== "local") {
    issues.add("failback", `brings the primary stack's services back after a failover; this is the ${role} stack: move it to the primary stack's config (prod)`);
    return undefined;
  }
  const f = raw.failback;
  if (!f.drStack) issues.add("failback.drStack", `names the dr stack whose promoted services these return from: 'pulumi config set --path ${PROJECT}:failback.drStack <org>/kryonix-dr/dr'`);
  const standbys: StandbySpec[] = [];
  for (const [i, s] of (f.standbys ?? []).entries()) {
    const key = `failback.standbys[${i}]`;
    const svc = services.find((x) => x.name === s.name);
    if (!svc) {
      issues.add(`${key}.name`, `'${s.name ?? ""}' is not a service of this stack (it has: ${services.map((x) => x.name).join(", ") || "none"}): name the service that failed over`);
      continue;
    }
    if (svc.engine !== "postgres" && svc.engine !== "redis") {
      issues.add(`${key}.name`, `'${svc.name}' is ${svc.engine}: only PostgreSQL and Redis services fail over to a warm standby, so only they fail back (others return by recovery from backups)`);
      continue;
    }
    if (s.engine !== svc.engine) issues.add(`${key}.engine`, `says ${JSON.stringify(s.engine)}, the service '${svc.name}' is ${svc.engine}: correct the engine`);
    if (standbys.some((x) => x.name === svc.name)) issues.add(`${key}.name`, `'${svc.name}' is listed twice: list each service once`);
    if (svc.engine === "postgres" && !svc.passwordKey) issues.add(SECRET.targetPassword(svc.name), `the returning PostgreSQL standby of '${svc.name}' needs its password: 'pulumi config set --secret ${PROJECT}:${SECRET.targetPassword(svc.name)} <value>'`);
    standbys.push({ name: svc.name, engine: svc.engine, passwordKey: svc.passwordKey });
  }
  if (standbys.length === 0 && (f.standbys ?? []).length === 0) issues.add("failback.standbys", `lists no service: name each service the dr stack promoted (e.g. [{ name: postgresql, engine: postgres }]), or remove ${PROJECT}:failback`);
  const sw = flag(issues, "failback.switch", f.switch, `'pulumi config set --path ${PROJECT}:failback.switch true' hands over to the returning services`);
  return {
    drStack: f.drStack ?? "",
    standbys,
    switch: sw ?? false,
    catchUpSeconds: positive(issues, "failback.catchUpSeconds", f.catchUpSeconds, 60),
    generation: generation(issues, "failback.generation", f.generation, 2),
  };
}
