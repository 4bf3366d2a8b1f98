/**
 * The one Pulumi mocks helper for unit tests: it records every registration (type, name, inputs,
 * provider) so tests can assert the resource graph, and it answers the few outputs the program
 * reads back from providers (generated user secrets, stack references).
 *
 * Import the program only AFTER `setupMocks` has run: Pulumi resources register at construction.
 */
import * as pulumi from "@pulumi/pulumi";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import yaml from "js-yaml";

/** How a secret input reaches the resource monitor (and therefore the mocks): a signature-tagged wrapper. */
const SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

export interface Registration {
  type: string;
  name: string;
  /** Inputs as the monitor receives them: secrets stay wrapped (see isSecret). */
  inputs: Record<string, unknown>;
  /** Provider reference (`urn::id`) when the resource has an explicit provider. */
  provider?: string;
  custom: boolean;
  /** Order in which the registration reached the mocks. */
  seq: number;
  /** Order in which its creation finished (set when the mock answers). */
  doneSeq?: number;
}

export interface MockOptions {
  /** Config values without the project prefix; objects are JSON-encoded as Pulumi does. */
  config: Record<string, unknown>;
  /** Keys (without prefix) whose values are secrets. */
  secretKeys?: string[];
  stack?: string;
  /** Outputs of stacks referenced by StackReference, by stack name. */
  stackOutputs?: Record<string, Record<string, unknown>>;
  /** Resource types whose creation takes this long (ms), to make ordering observable. */
  slow?: Record<string, number>;
}

export const PROJECT = "kryonix-dr";

/**
 * Sets mocks and config. Returns the live list of registrations, filled as the program runs.
 */
export async function setupMocks(options: MockOptions): Promise<Registration[]> {
  const registrations: Registration[] = [];
  let seq = 0;
  const config: Record<string, string> = {};
  for (const [key, value] of Object.entries(options.config)) {
    config[`${PROJECT}:${key}`] = typeof value === "string" ? value : JSON.stringify(value);
  }
  pulumi.runtime.setAllConfig(config, (options.secretKeys ?? []).map((k) => `${PROJECT}:${k}`));
  await pulumi.runtime.setMocks(
    {
      async newResource(args: pulumi.runtime.MockResourceArgs): Promise<{ id: string | undefined; state: Record<string, unknown> }> {
        const registration: Registration = {
          type: args.type,
          name: args.name,
          inputs: args.inputs,
          provider: args.provider,
          custom: args.custom ?? true,
          seq: seq++,
        };
        registrations.push(registration);
        const delay = options.slow?.[args.type];
        if (delay) await new Promise((r) => setTimeout(r, delay));
        registration.doneSeq = seq++;
        const state: Record<string, unknown> = { ...args.inputs };
        // The docker provider auto-names what the program leaves unnamed.
        if (args.type.startsWith("docker:") && state.name === undefined) state.name = `${args.name}-autonamed`;
        if (args.type === "minio:index/iamUser:IamUser") {
          // The real provider generates the secret key when none is given.
          state.secret = `generated-secret-key-of-${args.name}`;
        }
        if (args.type === "pulumi:pulumi:StackReference") {
          const name = String(args.inputs.name);
          const outputs = options.stackOutputs?.[name];
          if (!outputs) throw new Error(`test has no outputs for referenced stack ${name}`);
          state.outputs = outputs;
        }
        return { id: args.custom === false ? undefined : `${args.name}-id`, state };
      },
      call(args: pulumi.runtime.MockCallArgs): Record<string, unknown> {
        return args.inputs;
      },
    },
    PROJECT,
    options.stack ?? "test",
    false,
  );
  return registrations;
}

/** Awaits an Output's value (undefined when unknown). */
export function promiseOf<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => output.apply((v) => resolve(v)));
}

/** Whether an Output is marked secret. */
export function isSecretOutput(output: pulumi.Output<unknown>): Promise<boolean> {
  return pulumi.isSecret(output);
}

/** Waits until every pending registration has reached the mocks. */
export async function settle(): Promise<void> {
  // The runtime's own RPC-queue drain; it loops until no new registration started meanwhile.
  const settings = (await import("@pulumi/pulumi/runtime/settings.js")) as unknown as {
    waitForRPCs: () => Promise<void>;
  };
  await settings.waitForRPCs();
}

/** True when a recorded input value is a secret (the monitor's wrapper). */
export function isSecret(value: unknown): boolean {
  return typeof value === "object" && value !== null && (value as Record<string, unknown>)[SIG_KEY] === SECRET_SIG;
}

/** The value inside a secret wrapper (or the value itself). */
export function reveal<T = unknown>(value: unknown): T {
  return (isSecret(value) ? (value as { value: unknown }).value : value) as T;
}

/**
 * Every string found in plain (non-secret) inputs, with its path. Used to prove that no configured
 * secret value ever appears outside a secret wrapper.
 */
export function plainStrings(value: unknown, path = ""): Array<{ path: string; value: string }> {
  if (isSecret(value)) return [];
  if (typeof value === "string") return [{ path, value }];
  if (Array.isArray(value)) return value.flatMap((v, i) => plainStrings(v, `${path}[${i}]`));
  if (typeof value === "object" && value !== null) {
    return Object.entries(value).flatMap(([k, v]) => plainStrings(v, path ? `${path}.${k}` : k));
  }
  return [];
}

export function byType(registrations: Registration[], type: string): Registration[] {
  return registrations.filter((r) => r.type === type);
}

export function one(registrations: Registration[], type: string, name: string): Registration {
  const found = registrations.filter((r) => r.type === type && r.name === name);
  if (found.length !== 1) {
    const names = byType(registrations, type).map((r) => r.name);
    throw new Error(`expected one ${type} named ${name}, found ${found.length}; names of that type: ${names.join(", ")}`);
  }
  return found[0]!;
}

/** A recognisable value for each secret, so tests can prove it never appears in plain inputs. */
export function testSecretValue(key: string): string {
  // notificationTargets is checked as JSON at preview: a valid one, still recognisable.
  if (key === "notificationTargets") return JSON.stringify({ test: `https://hooks.example/test-secret-value-of-${key}` });
  return `test-secret-value-of-${key}`;
}

/**
 * Reads Pulumi.<stack>.yaml of this repository into mock config: every `secure:` placeholder
 * becomes testSecretValue(key) and is marked secret (as the CLI would after decrypting).
 */
export function stackFileConfig(stack: string): Pick<MockOptions, "config" | "secretKeys"> {
  const doc = yaml.load(readFileSync(join(__dirname, "..", "..", `Pulumi.${stack}.yaml`), "utf8")) as { config: Record<string, unknown> };
  const config: Record<string, unknown> = {};
  const secretKeys: string[] = [];
  for (const [qualified, value] of Object.entries(doc.config)) {
    const key = qualified.replace(/^kryonix-dr:/, "");
    if (value && typeof value === "object" && "secure" in (value as object)) {
      config[key] = testSecretValue(key);
      secretKeys.push(key);
    } else {
      config[key] = value;
    }
  }
  return { config, secretKeys };
}

/** Runs the program entry (stacks/index.ts) under the mocks already set, and waits for every registration. */
export async function runProgram(): Promise<Record<string, unknown>> {
  const mod = (await import("../../stacks/index.js")) as unknown as { default?: () => Promise<Record<string, unknown>> };
  const main = (mod.default ?? mod) as unknown as () => Promise<Record<string, unknown>>;
  const outputs = await main();
  await settle();
  return outputs;
}

/**
 * Where any of `secretValues` (or its base64 form, as Swarm secrets carry it) shows up outside a
 * secret wrapper, across every recorded input. Empty means no secret leaked into plain inputs.
 */
export function plainLeaks(registrations: Registration[], secretValues: string[]): string[] {
  const needles = secretValues.flatMap((v) => [v, Buffer.from(v, "utf8").toString("base64")]);
  const leaks: string[] = [];
  for (const r of registrations) {
    for (const { path, value } of plainStrings(r.inputs)) {
      if (needles.some((n) => value.includes(n))) leaks.push(`${r.type} ${r.name} ${path}`);
    }
  }
  return leaks;
}

/** Labels of a docker resource as a map. */
export function labelsOf(inputs: Record<string, unknown>): Record<string, string> {
  const list = reveal<Array<{ label: string; value: string }>>(inputs.labels) ?? [];
  return Object.fromEntries(list.map((l) => [l.label, l.value]));
}
