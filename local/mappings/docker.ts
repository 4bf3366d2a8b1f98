/**
 * @pulumi/docker 5.2.0 resources on the local Docker Engine (API 1.41 over the unix socket).
 * Input shapes are the provider's (the Terraform docker provider's schema in camelCase); each
 * function turns them into the Engine API's spec. Fields the program does not set stay unset,
 * so the engine applies its own defaults exactly as it does for the real provider.
 */
import { LABELS } from "../../contract/index.js";
import { DockerApi, DockerApiError, DEFAULT_DOCKER_HOST } from "../docker-api.js";
import { autoName, compact, durationNs, labelList, sleep, type Mapping } from "./types.js";

export type Obj = Record<string, any>;

export function api(provider: Record<string, unknown>): DockerApi {
  return new DockerApi(typeof provider.host === "string" && provider.host ? provider.host : DEFAULT_DOCKER_HOST);
}

export const arr = (v: unknown): any[] => (Array.isArray(v) ? v : []);

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

export function mountSpec(m: Obj): Obj {
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

export function healthcheckSpec(h: Obj | undefined, field: string): Obj | undefined {
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
    // A volume holding a service's data is kept when the program stops declaring it (local/deployer.ts).
    const stateful = labelList(i.labels)[LABELS.stateful] === "true";
    return { id: res.Name, state: { name: res.Name, mountpoint: undefined }, record: { id: res.Name, name: res.Name, ...(stateful ? { stateful } : {}) } };
  },
  async destroy(rec, provider) {
    // A volume is busy (409) until the containers of removed services are gone.
    await removeWhenFree(api(provider), `/volumes/${encodeURIComponent(String(rec.id))}`, (e) => e.status === 409 || inUse(e));
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

/** The run-once container is in docker-container.ts. */
export const dockerMappings: Mapping<any>[] = [service, secret, serviceConfig, network, volume, remoteImage];
