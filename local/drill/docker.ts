/**
 * What the drill needs from Docker beyond the deployer: the running task container of a Swarm
 * service, `docker exec` into it (the drill reaches the services inside the overlay network
 * through their own containers, so the stacks need no published ports), and removal of services
 * and volumes for the simulated disaster.
 */
import { execFile, spawn } from "node:child_process";
import { DockerApi, DockerApiError } from "../docker-api.js";

export const docker = new DockerApi();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface ContainerSummary {
  Id: string;
  Names: string[];
  State: string;
  Status: string;
  Labels: Record<string, string>;
}

/** Running containers of a Swarm service (its tasks on this node). */
export async function serviceContainers(service: string): Promise<ContainerSummary[]> {
  const filters = encodeURIComponent(JSON.stringify({ label: [`com.docker.swarm.service.name=${service}`], status: ["running"] }));
  return docker.request<ContainerSummary[]>("GET", `/containers/json?filters=${filters}`);
}

/** Container health: "healthy", "unhealthy", "starting", or "none" when it has no check. */
export async function containerHealth(id: string): Promise<string> {
  const c = await docker.request<{ State: { Health?: { Status: string } } }>("GET", `/containers/${id}/json`);
  return c.State.Health?.Status ?? "none";
}

/**
 * The one running task container of a service, once it is running (and healthy when it has a
 * health check); throws naming the service when that does not happen within `timeoutMs`.
 */
export async function waitForTask(service: string, timeoutMs: number, needHealthy = true): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = "no running task";
  for (;;) {
    const cs = await serviceContainers(service);
    if (cs.length > 0) {
      const h = await containerHealth(cs[0]!.Id);
      if (!needHealthy || h === "healthy" || h === "none") return cs[0]!.Id;
      last = `task ${cs[0]!.Id.slice(0, 12)} is ${h}`;
    }
    if (Date.now() > deadline) {
      throw new Error(`service ${service} did not become ready within ${Math.round(timeoutMs / 1000)} s (${last}): see 'docker service ps --no-trunc ${service}' and 'docker service logs ${service}'.`);
    }
    await sleep(1000);
  }
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `docker exec` (the CLI demultiplexes stdout/stderr for us). Never throws for a non-zero exit. */
export function dockerExec(container: string, argv: string[], timeoutMs = 30_000): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile("docker", ["exec", container, ...argv], { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) || (err && code !== 0 ? err.message : "") });
    });
  });
}

/**
 * `docker exec` of a long command whose stderr is its progress log: each stderr line is passed
 * on as it comes (and kept); stdout is returned whole. Never throws for a non-zero exit.
 */
export function dockerExecWatched(container: string, argv: string[], timeoutMs: number, onLine: (line: string) => void): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = spawn("docker", ["exec", container, ...argv], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let partial = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
      const lines = (partial + d.toString()).split("\n");
      partial = lines.pop() ?? "";
      for (const l of lines) if (l.trim()) onLine(l);
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (partial.trim()) onLine(partial);
      resolve({ code: code ?? 1, stdout, stderr: signal ? `${stderr}\n(docker exec stopped by ${signal}${signal === "SIGKILL" ? ` after ${timeoutMs / 1000} s` : ""})` : stderr });
    });
    child.on("error", (e) => {
      clearTimeout(timer);
      resolve({ code: 1, stdout, stderr: e.message });
    });
  });
}

/** Logs of a (stopped) container, stdout and stderr, via the CLI. */
export function containerLogs(container: string): Promise<string> {
  return new Promise((resolve) => {
    execFile("docker", ["logs", container], { maxBuffer: 64 * 1024 * 1024 }, (_err, stdout, stderr) => resolve(`${stdout}${stderr}`));
  });
}

/** Removes a Swarm service and waits until its containers are gone (so its volume can go too). */
export async function removeService(service: string, timeoutMs = 90_000): Promise<void> {
  await docker.remove(`/services/${encodeURIComponent(service)}`);
  const deadline = Date.now() + timeoutMs;
  const filters = encodeURIComponent(JSON.stringify({ label: [`com.docker.swarm.service.name=${service}`] }));
  for (;;) {
    const left = await docker.request<ContainerSummary[]>("GET", `/containers/json?all=1&filters=${filters}`);
    const running = left.filter((c) => c.State === "running" || c.State === "removing");
    if (running.length === 0) {
      // Swarm leaves exited task containers behind for a while; they would keep the volume in use.
      for (const c of left) await docker.remove(`/containers/${c.Id}?force=1&v=0`).catch(() => undefined);
      return;
    }
    if (Date.now() > deadline) throw new Error(`service ${service} was removed but ${running.length} container(s) still run after ${timeoutMs / 1000} s.`);
    await sleep(500);
  }
}

/** Removes a volume, retrying while Docker still counts a just-removed container as its user. */
export async function removeVolume(name: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await docker.remove(`/volumes/${encodeURIComponent(name)}`);
    } catch (err) {
      if (!(err instanceof DockerApiError) || err.status !== 409 || Date.now() > deadline) throw err;
      await sleep(1000);
    }
  }
}

/** Service labels (the fresh services carry their RPO/RTO targets there). */
export async function serviceLabels(service: string): Promise<Record<string, string>> {
  const s = await docker.request<{ Spec: { Labels?: Record<string, string> } }>("GET", `/services/${encodeURIComponent(service)}`);
  return s.Spec.Labels ?? {};
}

/** `node.labels.<key> == <value>` constraints: what a node must carry for the service to run there. */
export function nodeLabelsOf(constraints: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of constraints) {
    const m = /^\s*node\.labels\.([A-Za-z0-9._-]+)\s*==\s*(\S+)\s*$/.exec(c);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/**
 * Sets node labels on this swarm node, as an operator labels the node that holds a service's data
 * (`docker node update --label-add`); returns the labels it added (those already set are left).
 * `remove`: takes those labels off again.
 */
export async function setNodeLabels(labels: Record<string, string>, remove = false): Promise<Record<string, string>> {
  if (Object.keys(labels).length === 0) return {};
  const info = await docker.request<{ Swarm: { NodeID: string } }>("GET", "/info");
  const node = await docker.request<{ Version: { Index: number }; Spec: { Labels?: Record<string, string> } }>("GET", `/nodes/${info.Swarm.NodeID}`);
  const current = { ...(node.Spec.Labels ?? {}) };
  const changed: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) {
    if (remove ? current[k] !== v : current[k] === v) continue;
    changed[k] = v;
    if (remove) delete current[k];
    else current[k] = v;
  }
  if (Object.keys(changed).length === 0) return {};
  await docker.request("POST", `/nodes/${info.Swarm.NodeID}/update?version=${node.Version.Index}`, { ...node.Spec, Labels: current });
  return changed;
}
