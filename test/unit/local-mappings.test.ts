/**
 * The pure halves of the local deployer's mappings: provider inputs (the shapes @pulumi/docker,
 * @pulumi/minio and @pulumi/postgresql receive) turned into the Engine API / S3 / SQL requests,
 * and the deployer's bookkeeping. The real-infrastructure halves are in
 * test/integration/deployer.test.ts.
 */
import { describe, expect, it } from "vitest";
import { serviceSpec } from "../../local/mappings/docker.js";
import { containerBody } from "../../local/mappings/docker-container.js";
import { lifecycleRule, minioConnection } from "../../local/mappings/minio.js";
import { postgresqlConnection } from "../../local/mappings/postgresql.js";
import { autoName, durationNs, labelList, Mutex } from "../../local/mappings/types.js";
import { MAPPINGS, unsupported } from "../../local/mappings/index.js";
import { declaredKeys, describeError, referencedStack, statePath } from "../../local/deployer.js";
import { localCommand } from "../../local/mappings/command.js";

describe("durations", () => {
  it("reads Go durations as the provider takes them", () => {
    expect(durationNs("10s", "f")).toBe(10e9);
    expect(durationNs("1m30s", "f")).toBe(90e9);
    expect(durationNs("500ms", "f")).toBe(500e6);
    expect(durationNs("0", "f")).toBe(0);
    expect(durationNs(undefined, "f")).toBeUndefined();
  });
  it("names the field and the fix for a bad one", () => {
    expect(() => durationNs("10 seconds", "taskSpec.restartPolicy.delay")).toThrow(
      "taskSpec.restartPolicy.delay is '10 seconds', which is not a duration: write it like 10s, 1m30s or 500ms.",
    );
  });
});

describe("docker.Service inputs to a ServiceSpec", () => {
  const spec = serviceSpec(
    "svc",
    {
      labels: [{ label: "a", value: "1" }],
      taskSpec: {
        containerSpec: {
          image: "img:1",
          commands: ["/bin/sh", "-c"],
          args: ["sleep 1"],
          env: { B: "2", A: "1" },
          mounts: [{ type: "volume", source: "vol", target: "/data", readOnly: true, volumeOptions: { noCopy: true, driverName: "local", labels: [{ label: "x", value: "y" }] } }],
          secrets: [{ secretId: "sid", secretName: "sname", fileName: "pw", fileMode: 0o400 }],
          configs: [{ configId: "cid", configName: "cname", fileName: "/etc/c" }],
          healthcheck: { tests: ["CMD", "true"], interval: "5s", timeout: "2s", startPeriod: "1m", retries: 3 },
          stopGracePeriod: "2s",
          hosts: [{ host: "db", ip: "10.0.0.1" }],
        },
        networksAdvanceds: [{ name: "netid", aliases: ["al"] }],
        resources: { limits: { nanoCpus: 5e8, memoryBytes: 1024 }, reservation: { memoryBytes: 512 } },
        restartPolicy: { condition: "on-failure", delay: "5s", maxAttempts: 3, window: "1m" },
        placement: { constraints: ["node.role==manager"], prefs: ["spread=node.labels.zone"] },
        logDriver: { name: "json-file", options: { "max-size": "1m" } },
      },
      mode: { replicated: { replicas: 2 } },
      updateConfig: { parallelism: 1, delay: "10s", order: "start-first", maxFailureRatio: "0.1" },
      endpointSpec: { ports: [{ targetPort: 8080, publishedPort: 18080, protocol: "tcp", publishMode: "ingress" }] },
    },
    { "deployer.stack": "s" },
  );

  it("maps every field to its Engine API name and unit", () => {
    expect(spec).toEqual({
      Name: "svc",
      Labels: { a: "1", "deployer.stack": "s" },
      TaskTemplate: {
        ContainerSpec: {
          Image: "img:1",
          Command: ["/bin/sh", "-c"],
          Args: ["sleep 1"],
          Env: ["B=2", "A=1"],
          StopGracePeriod: 2e9,
          Healthcheck: { Test: ["CMD", "true"], Interval: 5e9, Timeout: 2e9, StartPeriod: 60e9, Retries: 3 },
          Hosts: ["10.0.0.1 db"],
          Mounts: [{ Type: "volume", Source: "vol", Target: "/data", ReadOnly: true, VolumeOptions: { NoCopy: true, Labels: { x: "y" }, DriverConfig: { Name: "local" } } }],
          Secrets: [{ SecretID: "sid", SecretName: "sname", File: { Name: "pw", UID: "0", GID: "0", Mode: 0o400 } }],
          Configs: [{ ConfigID: "cid", ConfigName: "cname", File: { Name: "/etc/c", UID: "0", GID: "0", Mode: 0o444 } }],
        },
        Resources: { Limits: { NanoCPUs: 5e8, MemoryBytes: 1024 }, Reservations: { MemoryBytes: 512 } },
        RestartPolicy: { Condition: "on-failure", Delay: 5e9, MaxAttempts: 3, Window: 60e9 },
        Placement: { Constraints: ["node.role==manager"], Preferences: [{ Spread: { SpreadDescriptor: "node.labels.zone" } }] },
        Networks: [{ Target: "netid", Aliases: ["al"] }],
        LogDriver: { Name: "json-file", Options: { "max-size": "1m" } },
      },
      Mode: { Replicated: { Replicas: 2 } },
      UpdateConfig: { Parallelism: 1, Delay: 10e9, Order: "start-first", MaxFailureRatio: 0.1 },
      EndpointSpec: { Ports: [{ TargetPort: 8080, PublishedPort: 18080, Protocol: "tcp", PublishMode: "ingress" }] },
    });
  });

  it("defaults to one replica and global mode when asked", () => {
    expect(serviceSpec("s", { taskSpec: { containerSpec: { image: "i" } } }, {}).Mode).toEqual({ Replicated: { Replicas: 1 } });
    expect(serviceSpec("s", { taskSpec: { containerSpec: { image: "i" } }, mode: { global: true } }, {}).Mode).toEqual({ Global: {} });
  });

  it("requires an image, naming the field", () => {
    expect(() => serviceSpec("s", { taskSpec: { containerSpec: {} } }, {})).toThrow("docker.Service s: taskSpec.containerSpec.image is required.");
  });
});

describe("docker.Container inputs to a create body", () => {
  it("maps env, volumes, mounts, ports, networks and limits", () => {
    const body = containerBody(
      {
        image: "img",
        command: ["run"],
        envs: ["A=1"],
        volumes: [{ volumeName: "v", containerPath: "/v", readOnly: true }, { hostPath: "/h", containerPath: "/h" }],
        mounts: [{ type: "tmpfs", target: "/t", tmpfsOptions: { sizeBytes: 1000 } }],
        ports: [{ internal: 80, external: 8080 }],
        networksAdvanced: [{ name: "n1", aliases: ["a"] }, { name: "n2" }],
        memory: 64,
        restart: "on-failure",
        maxRetryCount: 2,
        labels: [{ label: "l", value: "v" }],
      },
      { d: "s" },
    );
    expect(body).toMatchObject({
      Image: "img",
      Cmd: ["run"],
      Env: ["A=1"],
      Labels: { l: "v", d: "s" },
      ExposedPorts: { "80/tcp": {} },
      HostConfig: {
        Binds: ["v:/v:ro", "/h:/h"],
        Mounts: [{ Type: "tmpfs", Target: "/t", TmpfsOptions: { SizeBytes: 1000 } }],
        PortBindings: { "80/tcp": [{ HostIp: "0.0.0.0", HostPort: "8080" }] },
        NetworkMode: "n1",
        Memory: 64 * 1024 * 1024,
        RestartPolicy: { Name: "on-failure", MaximumRetryCount: 2 },
      },
      NetworkingConfig: { EndpointsConfig: { n1: { Aliases: ["a"] } } },
    });
  });
});

describe("minio inputs", () => {
  it("turns ILM rules into S3 lifecycle rules", () => {
    expect(lifecycleRule({ id: "full", filter: "full/", expiration: "30d", noncurrentVersionExpirationDays: 2 })).toEqual({
      ID: "full",
      Status: "Enabled",
      Filter: { Prefix: "full/" },
      Expiration: { Days: 30 },
      NoncurrentVersionExpiration: { NoncurrentDays: 2 },
    });
    expect(lifecycleRule({ id: "m", expiration: "DeleteMarker" }).Expiration).toEqual({ ExpiredObjectDeleteMarker: true });
    expect(lifecycleRule({ id: "d", expiration: "2030-01-01" }).Expiration).toEqual({ Date: new Date("2030-01-01") });
    expect(lifecycleRule({ id: "t", filter: "p/", tags: { k: "v" }, status: "Disabled" })).toMatchObject({
      Status: "Disabled",
      Filter: { And: { Prefix: "p/", Tags: [{ Key: "k", Value: "v" }] } },
    });
    expect(() => lifecycleRule({ id: "x", expiration: "30 days" })).toThrow(`IlmPolicy rule x: expiration '30 days' is not "<n>d", a date or "DeleteMarker".`);
  });

  it("reads provider settings (as the SDK passes them: strings) into a connection, naming what is missing", () => {
    expect(minioConnection({ minioServer: "h:1", minioUser: "u", minioPassword: "p", minioRegion: "r", minioSsl: "false" })).toEqual({
      endpoint: "http://h:1",
      region: "r",
      accessKey: "u",
      secretKey: "p",
    });
    expect(minioConnection({ minioServer: "h:1", minioUser: "u", minioPassword: "p", minioSsl: "true" }).endpoint).toBe("https://h:1");
    expect(() => minioConnection({ minioServer: "h:1" })).toThrow("The minio provider has no minioUser, minioPassword");
    expect(postgresqlConnection({ host: "h", port: "5433", username: "u", password: "p", sslmode: "disable" })).toEqual({
      host: "h",
      port: 5433,
      user: "u",
      password: "p",
      database: "postgres",
      ssl: false,
    });
    expect(() => postgresqlConnection({})).toThrow("The postgresql provider has no host");
  });
});

describe("deployer bookkeeping", () => {
  it("has one mapping per supported type and names an unsupported one with the list", () => {
    for (const [type, m] of MAPPINGS) expect(m.type).toBe(type);
    const err = unsupported("docker:index/plugin:Plugin", "p");
    expect(err.message).toContain("does not support resource type docker:index/plugin:Plugin (resource 'p')");
    expect(err.message).toContain("docker:index/service:Service");
  });

  it("auto-names like Pulumi when no name is given, and keeps an explicit one", () => {
    expect(autoName("web", "explicit")).toBe("explicit");
    expect(autoName("web", undefined)).toMatch(/^web-[0-9a-f]{7}$/);
  });

  it("reads docker label lists, stack references and state paths", () => {
    expect(labelList([{ label: "a", value: "1" }, { label: "b" }])).toEqual({ a: "1", b: "" });
    expect(referencedStack("org/kryonix-dr/prod")).toBe("prod");
    expect(referencedStack("prod")).toBe("prod");
    expect(statePath("local", "/d")).toBe("/d/local.json");
    expect(() => statePath("../etc", "/d")).toThrow("'../etc' is not a stack name");
  });

  it("counts only custom resources as declared", () => {
    const keys = declaredKeys([
      { type: "kryonix:x:C", name: "c", urn: "u1", custom: false, inputs: {} },
      { type: "docker:index/network:Network", name: "n", urn: "u2", custom: true, inputs: {} },
    ]);
    expect(keys).toEqual(["docker:index/network:Network n"]);
  });

  it("runs mutex turns one at a time, in order, past failures", async () => {
    const m = new Mutex();
    const log: string[] = [];
    const step = (name: string, fail = false) =>
      m.run(async () => {
        log.push(`start ${name}`);
        await new Promise((r) => setTimeout(r, 5));
        log.push(`end ${name}`);
        if (fail) throw new Error(name);
      });
    const results = await Promise.allSettled([step("a"), step("b", true), step("c")]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(log).toEqual(["start a", "end a", "start b", "end b", "start c", "end c"]);
  });
});

describe("command.local.Command, as @pulumi/command 1.2.1", () => {
  const reg = { type: localCommand.type, name: "cmd", urn: "urn:cmd", custom: true } as never;
  const ctx = {} as never;
  it("a changed input runs `update` (else `create`) in place, keeping the id and seeing the last stdout; changed triggers replace it", async () => {
    const made = await localCommand.create({ create: "echo one", triggers: ["a"] }, ctx, reg);
    expect(made.state).toEqual({ stdout: "one", stderr: "" });
    expect(localCommand.replaces!(made.record, { create: "echo two", triggers: ["a"] })).toBe(false);
    expect(localCommand.replaces!(made.record, { create: "echo one", triggers: ["b"] })).toBe(true);
    const again = await localCommand.update!(made.record, { create: "echo two", triggers: ["a"] }, ctx, reg);
    expect(again.id).toBe(made.id);
    expect(again.state).toEqual({ stdout: "two", stderr: "" });
    const upd = await localCommand.update!(again.record, { create: "echo x", update: 'echo "was $PULUMI_COMMAND_STDOUT"', delete: "true", triggers: ["a"] }, ctx, reg);
    expect(upd.state!.stdout).toBe("was two");
  });
  it("a record from before triggers were kept is replaced (as it was before)", () => {
    expect(localCommand.replaces!({}, { create: "echo" })).toBe(true);
  });
  it("a failed update throws with the command's name and output, and records nothing", async () => {
    const made = await localCommand.create({ create: "true" }, ctx, reg);
    await expect(localCommand.update!(made.record, { create: "echo broken >&2; exit 3" }, ctx, reg)).rejects.toThrow(/cmd failed with exit code 3: broken/);
  });
});

describe("describeError", () => {
  it("adds the HTTP status of an S3 call the SDK could not describe, and what a 403 means", () => {
    const e = Object.assign(new Error("UnknownError"), { $metadata: { httpStatusCode: 403 } });
    expect(describeError(e)).toMatch(/^UnknownError \(HTTP 403: the S3 server refused the provider's credentials.*AccessKey/);
    expect(describeError(Object.assign(new Error("UnknownError"), { $metadata: { httpStatusCode: 500 } }))).toBe("UnknownError (HTTP 500)");
    expect(describeError(new Error("plain"))).toBe("plain");
  });
});
