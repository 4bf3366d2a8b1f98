/**
 * @pulumi/docker 5.2.0 resources on the local Docker Engine (API 1.41 over the unix socket).
 * Input shapes are the provider's (the Terraform docker provider's schema in camelCase); each
 * function turns them into the Engine API's spec. Fields the program does not set stay unset,
 * so the engine applies its own defaults exactly as it does for the real provider.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { DockerApi, DockerApiError, DEFAULT_DOCKER_HOST } from "../docker-api.js";
import { autoName, compact, durationNs, labelList, sleep, type Mapping } from "./types.js";

type Obj = Record<string, any>;

function api(provider: Record<string, unknown>): DockerApi {
  return new DockerApi(typeof provider.host === "string" && provider.host ? provider.host : DEFAULT_DOCKER_HOST);
}

const arr = (v: unknown): any[] => (Array.isArray(v) ? v : []);

/**
 * Removes an object that may still be in use by a service being removed at the same time (a
 * dependency the program expressed by name only, which the graph does not show): retried while
 * the engine says "in use", for up to two minutes.
 */
async function removeWhenFree(d: DockerApi, path: string, busy: (err: DockerApiError) => boolean): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      return await d.remove(path);
    } catch (err) {
      if (!(err instanceof DockerApiError) || !busy(err) || Date.now() > deadline) throw err;
      await sleep(1000);
    }
  }
}
const inUse = (err: DockerApiError) => /in use/i.test(err.message);

function mountSpec(m: Obj): Obj {
  return compact({
    Type: m.type,
    Source: m.source,
    Target: m.target,
    ReadOnly: m.readOnly,
    BindOptions: m.bindOptions ? compact({ Propagation: m.bindOptions.propagation }) : undefined,
    VolumeOptions: m.volumeOptions
      ? compact({
          NoCopy: m.volumeOptions.noCopy,
          Labels: m.volumeOptions.labels ? labelList(m.volumeOptions.labels) : undefined,
          DriverConfig: m.volumeOptions.driverName
            ? compact({ Name: m.volumeOptions.driverName, Options: m.volumeOptions.driverOptions })
            : undefined,
          Subpath: m.volumeOptions.subpath,
        })
      : undefined,
    TmpfsOptions: m.tmpfsOptions ? compact({ SizeBytes: m.tmpfsOptions.sizeBytes, Mode: m.tmpfsOptions.mode }) : undefined,
  });
}

function healthcheckSpec(h: Obj | undefined, field: string): Obj | undefined {
  if (!h) return undefined;
  return compact({
    Test: h.tests,
    Interval: durationNs(h.interval, `${field}.interval`),
    Timeout: durationNs(h.timeout, `${field}.timeout`),
    StartPeriod: durationNs(h.startPeriod, `${field}.startPeriod`),
    Retries: h.retries,
  });
}

/** Docker's secret/config file mode: the provider takes it as a decimal of the octal mode (e.g. 292 = 0444). */
function fileRef(f: Obj, idKey: "SecretID" | "ConfigID", id: string, name: string | undefined): Obj {
  return compact({
    [idKey]: id,
    [idKey === "SecretID" ? "SecretName" : "ConfigName"]: name,
    File: { Name: f.fileName, UID: f.fileUid ?? "0", GID: f.fileGid ?? "0", Mode: f.fileMode ?? 0o444 },
  });
}

/** The provider's ServiceArgs as an Engine API ServiceSpec. */
export function serviceSpec(name: string, i: Obj, extraLabels: Record<string, string>): Obj {
  const ts: Obj = i.taskSpec ?? {};
  const cs: Obj = ts.containerSpec ?? {};
  if (!cs.image) throw new Error(`docker.Service ${name}: taskSpec.containerSpec.image is required.`);
  const update = (u: Obj | undefined, field: string) =>
    u
      ? compact({
          Parallelism: u.parallelism,
          Delay: durationNs(u.delay, `${field}.delay`),
          FailureAction: u.failureAction,
          Monitor: durationNs(u.monitor, `${field}.monitor`),
          MaxFailureRatio: u.maxFailureRatio === undefined ? undefined : Number(u.maxFailureRatio),
          Order: u.order,
        })
      : undefined;
  const resources = ts.resources
    ? compact({
        Limits: ts.resources.limits ? compact({ NanoCPUs: ts.resources.limits.nanoCpus, MemoryBytes: ts.resources.limits.memoryBytes }) : undefined,
        Reservations: ts.resources.reservation
          ? compact({ NanoCPUs: ts.resources.reservation.nanoCpus, MemoryBytes: ts.resources.reservation.memoryBytes })
          : undefined,
      })
    : undefined;
  return compact({
    Name: name,
    Labels: { ...labelList(i.labels), ...extraLabels },
    TaskTemplate: compact({
      ContainerSpec: compact({
        Image: cs.image,
        Labels: cs.labels ? labelList(cs.labels) : undefined,
        Command: cs.commands,
        Args: cs.args,
        Hostname: cs.hostname,
        Env: cs.env ? Object.entries(cs.env as Record<string, string>).map(([k, v]) => `${k}=${v}`) : undefined,
        Dir: cs.dir,
        User: cs.user,
        Groups: cs.groups,
        Init: cs.init,
        ReadOnly: cs.readOnly,
        StopSignal: cs.stopSignal,
        StopGracePeriod: durationNs(cs.stopGracePeriod, "taskSpec.containerSpec.stopGracePeriod"),
        Healthcheck: healthcheckSpec(cs.healthcheck, "taskSpec.containerSpec.healthcheck"),
        Hosts: cs.hosts ? arr(cs.hosts).map((h: Obj) => `${h.ip} ${h.host}`) : undefined,
        DNSConfig: cs.dnsConfig ? compact({ Nameservers: cs.dnsConfig.nameservers, Search: cs.dnsConfig.searches, Options: cs.dnsConfig.options }) : undefined,
        Mounts: cs.mounts ? arr(cs.mounts).map(mountSpec) : undefined,
        Secrets: cs.secrets ? arr(cs.secrets).map((s: Obj) => fileRef(s, "SecretID", s.secretId, s.secretName)) : undefined,
        Configs: cs.configs ? arr(cs.configs).map((c: Obj) => fileRef(c, "ConfigID", c.configId, c.configName)) : undefined,
        Sysctls: cs.sysctl,
        CapabilityAdd: cs.capAdds,
        CapabilityDrop: cs.capDrops,
      }),
      Resources: resources,
      RestartPolicy: ts.restartPolicy
        ? compact({
            Condition: ts.restartPolicy.condition,
            Delay: durationNs(ts.restartPolicy.delay, "taskSpec.restartPolicy.delay"),
            MaxAttempts: ts.restartPolicy.maxAttempts,
            Window: durationNs(ts.restartPolicy.window, "taskSpec.restartPolicy.window"),
          })
        : undefined,
      Placement: ts.placement
        ? compact({
            Constraints: ts.placement.constraints,
            Preferences: ts.placement.prefs
              ? arr(ts.placement.prefs).map((p: string) => ({ Spread: { SpreadDescriptor: String(p).replace(/^spread=/, "") } }))
              : undefined,
            MaxReplicas: ts.placement.maxReplicas,
            Platforms: ts.placement.platforms ? arr(ts.placement.platforms).map((p: Obj) => ({ Architecture: p.architecture, OS: p.os })) : undefined,
          })
        : undefined,
      Networks: ts.networksAdvanceds
        ? arr(ts.networksAdvanceds).map((n: Obj) => compact({ Target: n.name ?? n.id, Aliases: n.aliases, DriverOpts: n.driverOpts }))
        : undefined,
      LogDriver: ts.logDriver ? compact({ Name: ts.logDriver.name, Options: ts.logDriver.options }) : undefined,
      ForceUpdate: ts.forceUpdate,
      Runtime: ts.runtime,
    }),
    Mode: i.mode?.global ? { Global: {} } : { Replicated: { Replicas: i.mode?.replicated?.replicas ?? 1 } },
    UpdateConfig: update(i.updateConfig, "updateConfig"),
    RollbackConfig: update(i.rollbackConfig, "rollbackConfig"),
    EndpointSpec: i.endpointSpec
      ? compact({
          Mode: i.endpointSpec.mode,
          Ports: i.endpointSpec.ports
            ? arr(i.endpointSpec.ports).map((p: Obj) =>
                compact({ Name: p.name, Protocol: p.protocol, TargetPort: p.targetPort, PublishedPort: p.publishedPort, PublishMode: p.publishMode }),
              )
            : undefined,
        })
      : undefined,
  });
}

export interface Task {
  Status?: { State?: string; Err?: string; Message?: string };
  DesiredState?: string;
}

async function serviceTasks(d: DockerApi, id: string): Promise<Task[]> {
  return d.request<Task[]>("GET", `/tasks?filters=${encodeURIComponent(JSON.stringify({ service: [id] }))}`);
}

/** The provider's convergeConfig: wait until every desired task runs; report the task's error otherwise. */
async function converge(d: DockerApi, id: string, name: string, want: number, timeoutMs: number, delayMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    const tasks = await serviceTasks(d, id);
    const running = tasks.filter((t) => t.DesiredState === "running" && t.Status?.State === "running").length;
    if (running >= want) return;
    const failed = tasks.find((t) => ["failed", "rejected"].includes(t.Status?.State ?? ""));
    if (failed) last = `${failed.Status?.State}: ${failed.Status?.Err ?? failed.Status?.Message ?? ""}`;
    await sleep(delayMs);
  }
  throw new Error(`docker.Service ${name} did not converge within ${timeoutMs / 1000} s (${want} task(s) wanted)${last ? `; last task ${last}` : ""}.`);
}

export const service: Mapping<Obj> = {
  plan: (i, reg) => ({ name: i.name ?? reg.name }),
  type: "docker:index/service:Service",
  async create(i, ctx, reg) {
    const d = api(ctx.provider);
    const name = autoName(reg.name, i.name);
    const spec = serviceSpec(name, i, ctx.labels);
    const res = await d.request<{ ID: string }>("POST", "/services/create", spec);
    if (i.convergeConfig) {
      const want = i.mode?.global ? 1 : (i.mode?.replicated?.replicas ?? 1);
      await converge(
        d,
        res.ID,
        name,
        want,
        (durationNs(i.convergeConfig.timeout, "convergeConfig.timeout") ?? 3 * 60e9) / 1e6,
        (durationNs(i.convergeConfig.delay, "convergeConfig.delay") ?? 7e9) / 1e6,
      );
    }
    return { id: res.ID, state: { name }, record: { id: res.ID, name } };
  },
  /** A Swarm service update: the new spec at the current version; Swarm rolls the tasks as it does for `docker service update`. */
  async update(rec, i, ctx, reg) {
    const d = api(ctx.provider);
    const id = String(rec.id);
    const name = String(rec.name);
    if (i.name !== undefined && i.name !== name) throw new Error(`docker.Service ${reg.name}: renaming ${name} to ${i.name} in place is not supported; destroy the stack and deploy it again.`);
    const current = await d.request<{ Version: { Index: number } }>("GET", `/services/${id}`);
    await d.request("POST", `/services/${id}/update?version=${current.Version.Index}`, serviceSpec(name, i, ctx.labels));
    return { id, state: { name }, record: { id, name } };
  },
  async destroy(rec, provider) {
    const d = api(provider);
    const id = String(rec.id);
    await d.remove(`/services/${id}`);
    // Networks, secrets and volumes it used stay busy until its task containers are gone, which
    // can take a while after the service itself (a process that ignores SIGTERM waits out the
    // stop grace period).
    const filter = encodeURIComponent(JSON.stringify({ label: [`com.docker.swarm.service.id=${id}`] }));
    const deadline = Date.now() + 180_000;
    while (Date.now() < deadline) {
      const left = await d.request<unknown[]>("GET", `/containers/json?all=1&filters=${filter}`);
      if (left.length === 0) return;
      await sleep(1000);
    }
    throw new Error(`the containers of service ${rec.name} were still there 180 s after it was removed`);
  },
};

export const secret: Mapping<Obj> = {
  plan: (i, reg) => ({ name: i.name ?? reg.name }),
  type: "docker:index/secret:Secret",
  async create(i, ctx, reg) {
    const name = autoName(reg.name, i.name);
    // The provider takes `data` already base64-encoded, as the Engine API does.
    const res = await api(ctx.provider).request<{ ID: string }>("POST", "/secrets/create", {
      Name: name,
      Data: i.data,
      Labels: { ...labelList(i.labels), ...ctx.labels },
    });
    return { id: res.ID, state: { name }, record: { id: res.ID, name } };
  },
  async destroy(rec, provider) {
    await removeWhenFree(api(provider), `/secrets/${rec.id}`, inUse);
  },
};

export const serviceConfig: Mapping<Obj> = {
  plan: (i, reg) => ({ name: i.name ?? reg.name }),
  type: "docker:index/serviceConfig:ServiceConfig",
  async create(i, ctx, reg) {
    const name = autoName(reg.name, i.name);
    const data = i.data ?? (typeof i.dataRaw === "string" ? Buffer.from(i.dataRaw).toString("base64") : undefined);
    if (data === undefined) throw new Error(`docker.ServiceConfig ${reg.name}: set data (base64) or dataRaw.`);
    const res = await api(ctx.provider).request<{ ID: string }>("POST", "/configs/create", {
      Name: name,
      Data: data,
      Labels: { ...labelList(i.labels), ...ctx.labels },
    });
    return { id: res.ID, state: { name }, record: { id: res.ID, name } };
  },
  async destroy(rec, provider) {
    await removeWhenFree(api(provider), `/configs/${rec.id}`, inUse);
  },
};

export const network: Mapping<Obj> = {
  plan: (i, reg) => ({ name: i.name ?? reg.name }),
  type: "docker:index/network:Network",
  async create(i, ctx, reg) {
    const name = autoName(reg.name, i.name);
    const res = await api(ctx.provider).request<{ Id: string }>(
      "POST",
      "/networks/create",
      compact({
        Name: name,
        CheckDuplicate: true,
        Driver: i.driver,
        Attachable: i.attachable,
        Internal: i.internal,
        Ingress: i.ingress,
        EnableIPv6: i.ipv6,
        Options: i.options,
        Labels: { ...labelList(i.labels), ...ctx.labels },
        IPAM:
          i.ipamConfigs || i.ipamDriver || i.ipamOptions
            ? compact({
                Driver: i.ipamDriver ?? "default",
                Options: i.ipamOptions,
                Config: arr(i.ipamConfigs).map((c: Obj) => compact({ Subnet: c.subnet, IPRange: c.ipRange, Gateway: c.gateway, AuxiliaryAddresses: c.auxAddress })),
              })
            : undefined,
      }),
    );
    return { id: res.Id, state: { name }, record: { id: res.Id, name } };
  },
  async destroy(rec, provider) {
    // An overlay network stays "in use" (403) for a moment after its last task is removed.
    await removeWhenFree(api(provider), `/networks/${rec.id}`, (e) => e.status === 403 || inUse(e));
  },
};

export const volume: Mapping<Obj> = {
  plan: (i, reg) => ({ name: i.name ?? reg.name }),
  type: "docker:index/volume:Volume",
  async create(i, ctx, reg) {
    if (i.cluster) throw new Error(`docker.Volume ${reg.name}: cluster volumes are not supported by the local deployer (Engine 20.10 has none).`);
    const name = autoName(reg.name, i.name);
    const res = await api(ctx.provider).request<{ Name: string }>(
      "POST",
      "/volumes/create",
      compact({ Name: name, Driver: i.driver, DriverOpts: i.driverOpts, Labels: { ...labelList(i.labels), ...ctx.labels } }),
    );
    return { id: res.Name, state: { name: res.Name, mountpoint: undefined }, record: { id: res.Name, name: res.Name } };
  },
  async destroy(rec, provider) {
    // A volume is busy (409) until the containers of removed services are gone.
    await removeWhenFree(api(provider), `/volumes/${encodeURIComponent(String(rec.id))}`, (e) => e.status === 409 || inUse(e));
  },
};

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

export const remoteImage: Mapping<Obj> = {
  plan: (i) => ({ imageId: `[unknown image id of ${i.name}]`, repoDigest: "" }),
  type: "docker:index/remoteImage:RemoteImage",
  async create(i, ctx, reg) {
    if (i.build) throw new Error(`docker.RemoteImage ${reg.name}: 'build' is not supported by the local deployer; build the image beforehand (scripts/platform-up.sh builds the local images).`);
    const d = api(ctx.provider);
    let info: Obj;
    try {
      info = await d.request<Obj>("GET", `/images/${encodeURIComponent(i.name)}/json`);
    } catch (err) {
      if (err instanceof DockerApiError && err.status === 404) {
        throw new Error(`docker.RemoteImage ${reg.name}: image '${i.name}' is not on this engine and no registry is reachable: build it first (bash scripts/platform-up.sh builds the local images).`);
      }
      throw err;
    }
    const repoDigest = (info.RepoDigests as string[] | undefined)?.[0] ?? "";
    // Nothing was created (the image existed), so destroy removes nothing.
    return { id: `${info.Id}${i.name}`, state: { imageId: info.Id, repoDigest }, record: { image: i.name, existed: true } };
  },
  async destroy() {},
};

/** `pulumi:providers:docker`: only connection settings. */
export function dockerConnection(inputs: Record<string, unknown>): Record<string, unknown> {
  return { host: inputs.host ?? DEFAULT_DOCKER_HOST };
}

export const dockerMappings: Mapping<any>[] = [service, secret, serviceConfig, network, volume, container, remoteImage];
