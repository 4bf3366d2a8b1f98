/**
 * @pulumi/docker's Container on the local Docker Engine: the run-once jobs (restore, standby
 * seed and activation, catalog steps), attached so the deployment waits for their exit. The
 * Swarm objects are in docker.ts.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { api, arr, healthcheckSpec, mountSpec, type Obj } from "./docker.js";
import { autoName, compact, labelList, sleep, type Mapping } from "./types.js";

/** The provider's ContainerArgs as an Engine API create body. */
export function containerBody(i: Obj, extraLabels: Record<string, string>): Obj {
  const exposed: Obj = {};
  const bindings: Obj = {};
  for (const p of arr(i.ports)) {
    const key = `${p.internal}/${p.protocol ?? "tcp"}`;
    exposed[key] = {};
    bindings[key] = [compact({ HostIp: p.ip ?? "0.0.0.0", HostPort: p.external === undefined ? "" : String(p.external) })];
  }
  const binds = arr(i.volumes)
    .filter((v: Obj) => !v.fromContainer)
    .map((v: Obj) => `${v.hostPath ?? v.volumeName}:${v.containerPath}${v.readOnly ? ":ro" : ""}`);
  const nets = arr(i.networksAdvanced);
  const endpoints: Obj = {};
  for (const n of nets) endpoints[n.name] = compact({ Aliases: n.aliases, IPAMConfig: n.ipv4Address ? { IPv4Address: n.ipv4Address } : undefined });
  return compact({
    Image: i.image,
    Cmd: i.command,
    Entrypoint: i.entrypoints,
    Env: i.envs,
    User: i.user,
    WorkingDir: i.workingDir,
    Hostname: i.hostname,
    Domainname: i.domainname,
    Tty: i.tty,
    OpenStdin: i.stdinOpen,
    StopSignal: i.stopSignal,
    StopTimeout: i.stopTimeout,
    Labels: { ...labelList(i.labels), ...extraLabels },
    ExposedPorts: Object.keys(exposed).length ? exposed : undefined,
    Healthcheck: healthcheckSpec(i.healthcheck, "healthcheck"),
    HostConfig: compact({
      Binds: binds.length ? binds : undefined,
      VolumesFrom: arr(i.volumes).filter((v: Obj) => v.fromContainer).map((v: Obj) => v.fromContainer),
      Mounts: i.mounts ? arr(i.mounts).map(mountSpec) : undefined,
      NetworkMode: i.networkMode ?? (nets.length ? nets[0].name : undefined),
      PortBindings: Object.keys(bindings).length ? bindings : undefined,
      RestartPolicy: i.restart ? compact({ Name: i.restart, MaximumRetryCount: i.restart === "on-failure" ? i.maxRetryCount : undefined }) : undefined,
      AutoRemove: i.rm,
      Privileged: i.privileged,
      ReadonlyRootfs: i.readOnly,
      Init: i.init,
      CapAdd: i.capabilities?.adds,
      CapDrop: i.capabilities?.drops,
      Memory: i.memory === undefined ? undefined : i.memory * 1024 * 1024,
      NanoCpus: i.cpus === undefined ? undefined : Math.round(Number(i.cpus) * 1e9),
      LogConfig: i.logDriver ? compact({ Type: i.logDriver, Config: i.logOpts }) : undefined,
      ExtraHosts: i.hosts ? arr(i.hosts).map((h: Obj) => `${h.host}:${h.ip}`) : undefined,
      Tmpfs: i.tmpfs,
      Sysctls: i.sysctls,
      ShmSize: i.shmSize === undefined ? undefined : i.shmSize * 1024 * 1024,
      SecurityOpt: i.securityOpts,
    }),
    // The Engine attaches only one network at create; the rest are connected after.
    NetworkingConfig: nets.length ? { EndpointsConfig: { [nets[0].name]: endpoints[nets[0].name] } } : undefined,
  });
}

/**
 * The provider's `uploads` (files copied into the container before it starts, e.g. secret files
 * for a run-once job) as a tar archive, made by tar(1) from a private temporary directory that
 * is removed at once. Entries carry only the files (owner root, the declared permissions); the
 * engine creates missing parent directories.
 */
export function uploadsTar(uploads: Obj[], resource: string): Buffer {
  const dir = mkdtempSync(join(tmpdir(), "kdr-uploads-"));
  try {
    const files: string[] = [];
    for (const u of uploads) {
      const rel = String(u.file ?? "").replace(/^\/+/, "");
      if (!rel) throw new Error(`docker.Container ${resource}: an upload has no 'file'.`);
      const path = join(dir, rel);
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      if (u.contentBase64 !== undefined) writeFileSync(path, Buffer.from(String(u.contentBase64), "base64"), { mode: 0o600 });
      else if (u.content !== undefined) writeFileSync(path, String(u.content), { mode: 0o600 });
      else if (u.source !== undefined) copyFileSync(String(u.source), path);
      else throw new Error(`docker.Container ${resource}: upload ${u.file} has none of content, contentBase64, source.`);
      chmodSync(path, u.permissions ? parseInt(String(u.permissions), 8) : u.executable ? 0o755 : 0o644);
      files.push(rel);
    }
    const r = spawnSync("tar", ["-C", dir, "--numeric-owner", "--owner=0", "--group=0", "--no-recursion", "-cf", "-", ...files], { maxBuffer: 256 << 20 });
    if (r.status !== 0) throw new Error(`docker.Container ${resource}: tar failed: ${r.stderr.toString().trim()}`);
    return r.stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const container: Mapping<Obj> = {
  plan: (i, reg) => ({ name: i.name ?? reg.name }),
  type: "docker:index/container:Container",
  async create(i, ctx, reg) {
    const d = api(ctx.provider);
    const name = autoName(reg.name, i.name);
    const res = await d.request<{ Id: string }>("POST", `/containers/create?name=${encodeURIComponent(name)}`, containerBody(i, ctx.labels));
    const id = res.Id;
    if (arr(i.uploads).length > 0) {
      try {
        await d.putArchive(id, "/", uploadsTar(arr(i.uploads), reg.name));
      } catch (err) {
        throw Object.assign(err as Error, { created: { id, name, removeVolumes: i.removeVolumes !== false } });
      }
    }
    for (const n of arr(i.networksAdvanced).slice(1)) {
      await d.request("POST", `/networks/${encodeURIComponent(n.name)}/connect`, { Container: id, EndpointConfig: compact({ Aliases: n.aliases }) });
    }
    const record = { id, name, removeVolumes: i.removeVolumes !== false };
    if (i.start === false) return { id, state: { name }, record };
    await d.request("POST", `/containers/${id}/start`);
    const state: Obj = { name };
    if (i.attach) {
      // Run-once semantics of the provider's `attach`: wait for the end and fail on a non-zero exit.
      const waited = await d.request<{ StatusCode: number }>("POST", `/containers/${id}/wait`, undefined, (i.waitTimeout ?? 3600) * 1000);
      const logs = await d.logs(id);
      state.exitCode = waited.StatusCode;
      if (i.logs) state.containerLogs = logs.stdout + logs.stderr;
      if (waited.StatusCode !== 0) {
        throw Object.assign(
          new Error(`docker.Container ${reg.name} exited with code ${waited.StatusCode}: ${(logs.stderr || logs.stdout).trim().split("\n").slice(-20).join("\n")}`),
          { created: record },
        );
      }
    } else if (i.wait) {
      const deadline = Date.now() + (i.waitTimeout ?? 60) * 1000;
      for (;;) {
        const info = await d.request<Obj>("GET", `/containers/${id}/json`);
        const health = info.State?.Health?.Status;
        if (health === "healthy") break;
        if (!info.State?.Running || Date.now() > deadline) {
          throw Object.assign(new Error(`docker.Container ${reg.name} did not become healthy (state ${info.State?.Status}, health ${health ?? "none"}).`), { created: record });
        }
        await sleep(1000);
      }
    } else if (i.mustRun !== false) {
      // The provider's mustRun: the container has to be running after start.
      await sleep(500);
      const info = await d.request<Obj>("GET", `/containers/${id}/json`);
      if (!info.State?.Running) {
        const logs = await d.logs(id);
        throw Object.assign(
          new Error(`docker.Container ${reg.name} is not running after start (exit code ${info.State?.ExitCode}): ${(logs.stderr || logs.stdout).trim().split("\n").slice(-20).join("\n")}`),
          { created: record },
        );
      }
    }
    return { id, state, record };
  },
  async destroy(rec, provider) {
    await api(provider).remove(`/containers/${rec.id}?force=1${rec.removeVolumes ? "&v=1" : ""}`);
  },
};
