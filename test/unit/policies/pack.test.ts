/**
 * The real PolicyPack, as the Pulumi CLI runs it: the pack directory started by @pulumi/pulumi's
 * policy-pack launcher in its own process (constructing a PolicyPack starts the analyzer gRPC
 * server, one per process), then called over
 * gRPC with the messages the engine sends — properties marshalled with secrets kept as the
 * engine's signature-tagged wrappers and unknowns as its sentinels. This is everything
 * `pulumi preview --policy-pack policies` does except the engine itself.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type * as AnalyzerPb from "@pulumi/pulumi/proto/analyzer_pb.js";
import type * as AnalyzerGrpc from "@pulumi/pulumi/proto/analyzer_grpc_pb.js";
import type * as StructPb from "google-protobuf/google/protobuf/struct_pb.js";
import type * as EmptyPb from "google-protobuf/google/protobuf/empty_pb.js";
import type * as Grpc from "@grpc/grpc-js";
import { AGENT_ENV } from "../../../contract/index.js";
import type { PlannedResource } from "../../../policies/evaluate.js";
import { compliantPlan, copy, envOf, find, SECRET, T } from "./fixtures.js";

const ROOT = resolve(__dirname, "..", "..", "..");
// Load the proto and gRPC modules from where @pulumi/pulumi (and so the pack) loads them.
const fromPulumi = createRequire(createRequire(join(ROOT, "package.json")).resolve("@pulumi/pulumi/proto/analyzer_pb.js"));
const pb = fromPulumi("./analyzer_pb.js") as typeof AnalyzerPb;
const rpc = fromPulumi("./analyzer_grpc_pb.js") as typeof AnalyzerGrpc;
const grpc = fromPulumi("@grpc/grpc-js") as typeof Grpc;
const { Struct } = fromPulumi("google-protobuf/google/protobuf/struct_pb.js") as typeof StructPb;
const { Empty } = fromPulumi("google-protobuf/google/protobuf/empty_pb.js") as typeof EmptyPb;

const SIG = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";
const UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/** Puts back what the engine would send for "[secret]": the secret wrapper around a real value. */
function engineProps(v: unknown, path = ""): unknown {
  if (v === SECRET) return { [SIG]: SECRET_SIG, value: `plaintext-of-${path}` };
  if (Array.isArray(v)) return v.map((x, i) => engineProps(x, `${path}[${i}]`));
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, engineProps(x, path ? `${path}.${k}` : k)]));
  }
  return v;
}

/** `bucketDeps`: URN of a resource -> URN its `bucket` input came from (the engine's property dependencies). */
function request(plan: PlannedResource[], bucketDeps: Record<string, string> = {}): AnalyzerPb.AnalyzeStackRequest {
  const req = new pb.AnalyzeStackRequest();
  req.setResourcesList(
    plan.map((r) => {
      const a = new pb.AnalyzerResource();
      a.setType(r.type);
      a.setName(r.name);
      a.setUrn(r.urn!);
      a.setProperties(Struct.fromJavaScript(engineProps(r.inputs) as Record<string, never>));
      a.setOptions(new pb.AnalyzerResourceOptions());
      if (r.parent) a.setParent(r.parent);
      const dep = bucketDeps[r.urn!];
      if (dep) a.getPropertydependenciesMap().set("bucket", new pb.AnalyzerPropertyDependencies().setUrnsList([dep]));
      return a;
    }),
  );
  return req;
}

let pack: ChildProcess;
let client: AnalyzerGrpc.AnalyzerClient;

beforeAll(async () => {
  // Exactly what the CLI's `pulumi-analyzer-policy` plugin runs: @pulumi/pulumi's policy-pack
  // launcher (which registers its bundled ts-node first) on the pack directory, with the engine's
  // address as first argument (only used for logging, unused here).
  const launcher = createRequire(join(ROOT, "package.json")).resolve("@pulumi/pulumi/cmd/run-policy-pack/index.js");
  pack = spawn(process.execPath, [launcher, "127.0.0.1:1", "."], { cwd: join(ROOT, "policies"), stdio: ["ignore", "pipe", "pipe"] });
  const port = await new Promise<string>((res, rej) => {
    let out = "";
    let err = "";
    pack.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /^(\d+)\s*$/m.exec(out);
      if (m) res(m[1]!);
    });
    pack.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    pack.on("exit", (code) => rej(new Error(`policy pack exited with ${code} before serving: ${err}`)));
  });
  client = new rpc.AnalyzerClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
});

afterAll(() => {
  client?.close();
  pack?.kill("SIGTERM");
});

function analyzeStack(plan: PlannedResource[], bucketDeps?: Record<string, string>): Promise<AnalyzerPb.AnalyzeDiagnostic[]> {
  return new Promise((res, rej) => client.analyzeStack(request(plan, bucketDeps), (err, resp) => (err ? rej(err) : res(resp.getDiagnosticsList()))));
}

function configure(levels: Record<string, AnalyzerPb.EnforcementLevel>): Promise<void> {
  const req = new pb.ConfigureAnalyzerRequest();
  for (const [name, level] of Object.entries(levels)) {
    const c = new pb.PolicyConfig();
    c.setEnforcementlevel(level);
    c.setProperties(Struct.fromJavaScript({}));
    req.getPolicyconfigMap().set(name, c);
  }
  return new Promise((res, rej) => client.configure(req, (err) => (err ? rej(err) : res())));
}

describe("the PolicyPack served over gRPC", () => {
  it("describes the eleven policies, mandatory, with their config schemas", async () => {
    const info = await new Promise<AnalyzerPb.AnalyzerInfo>((res, rej) => client.getAnalyzerInfo(new Empty(), (err, r) => (err ? rej(err) : res(r))));
    expect(info.getName()).toBe("kryonix-dr");
    expect(info.getVersion()).toBe("0.1.0");
    const policies = info.getPoliciesList();
    expect(policies).toHaveLength(11);
    for (const p of policies) expect(p.getEnforcementlevel()).toBe(pb.EnforcementLevel.MANDATORY);
    const sidecar = policies.find((p) => p.getName() === "stateful-service-has-backup-sidecar")!;
    expect(Object.keys(sidecar.getConfigschema()!.getProperties()!.toJavaScript()).sort()).toEqual(["engines", "exclude", "statefulMountTypes"]);
  });

  it("passes the compliant plan whose secrets arrive as engine secret wrappers (plaintext inside)", async () => {
    expect((await analyzeStack(compliantPlan())).map((d) => d.getMessage())).toEqual([]);
  });

  it("reports a plain key in env, with the resource's URN, mandatory", async () => {
    const plan = copy(compliantPlan());
    envOf(plan, "postgres-sidecar-service").AWS_SECRET_ACCESS_KEY = "wJalrXUtnFEMI";
    const d = await analyzeStack(plan);
    expect(d).toHaveLength(1);
    expect(d[0]!.getPolicyname()).toBe("no-plaintext-credentials");
    expect(d[0]!.getUrn()).toBe(find(plan, T.service, "postgres-sidecar-service").urn);
    expect(d[0]!.getEnforcementlevel()).toBe(pb.EnforcementLevel.MANDATORY);
    expect(d[0]!.getMessage()).toContain("environment variable AWS_SECRET_ACCESS_KEY");
  });

  it("still judges a plan with values unknown during preview, linking them through property dependencies", async () => {
    const plan = copy(compliantPlan());
    const dependsOn: Record<string, string> = {};
    for (const r of plan) {
      if (r.type !== T.versioning && r.type !== T.ilm) continue;
      const bucket = plan.find((b) => b.type === T.bucket && b.inputs.bucket === r.inputs.bucket)!;
      dependsOn[r.urn!] = bucket.urn!;
      r.inputs.bucket = UNKNOWN_STRING;
    }
    envOf(plan, "redis-sidecar-service")[AGENT_ENV.scheduleIncremental] = "0 */4 * * *";
    const d = await analyzeStack(plan, dependsOn);
    expect(d.map((x) => x.getPolicyname())).toEqual(["schedule-meets-rpo"]);
    // Without the dependencies the three buckets under one parent cannot be told apart.
    expect((await analyzeStack(plan)).map((x) => x.getPolicyname())).toContain("backup-bucket-private-versioned-locked");
  });

  it("honours an enforcement level set through the pack config", async () => {
    const plan = copy(compliantPlan());
    delete find(plan, T.bucket, "storage-critical").inputs.objectLocking;
    await configure({ "backup-bucket-private-versioned-locked": pb.EnforcementLevel.ADVISORY });
    const d = await analyzeStack(plan);
    expect(d.map((x) => [x.getPolicyname(), x.getEnforcementlevel()])).toEqual([["backup-bucket-private-versioned-locked", pb.EnforcementLevel.ADVISORY]]);
    await configure({ "backup-bucket-private-versioned-locked": pb.EnforcementLevel.DISABLED });
    expect(await analyzeStack(plan)).toEqual([]);
    await configure({});
  });
});
