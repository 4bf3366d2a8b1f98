/**
 * How @pulumi/policy 1.21 presents secrets to validateStack/validateResource, and the marker
 * the pack entry installs so that they look like the in-process plan's "[secret]". Uses the
 * library's own deserializer on a protobuf Struct shaped like the engine's (KeepSecrets).
 */
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import type * as StructPb from "google-protobuf/google/protobuf/struct_pb.js";
import { presentSecretsAsMarker } from "../../../policies/secrets.js";

const ROOT = resolve(__dirname, "..", "..", "..");
const req = createRequire(join(ROOT, "package.json"));
type Deserialize = (s: unknown, proxySecrets: boolean) => Record<string, unknown>;
const deserialize = req("@pulumi/policy/deserialize.js") as { deserializeProperties: Deserialize };
const { Secret } = req("@pulumi/policy") as { Secret: new (v: unknown) => unknown };
const { Struct } = createRequire(req.resolve("@pulumi/policy/deserialize.js"))("google-protobuf/google/protobuf/struct_pb.js") as typeof StructPb;

const SIG = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";
const props = () =>
  Struct.fromJavaScript({
    name: "sidecar",
    taskSpec: { containerSpec: { env: { KDR_S3_BUCKET: "b", AWS_SECRET_ACCESS_KEY: { [SIG]: SECRET_SIG, value: "wJalrXUtnFEMI" } } } },
    data: { [SIG]: SECRET_SIG, value: "c2VjcmV0" },
  });

describe("secrets under the Pulumi CLI", () => {
  it("arrive unwrapped (plaintext, no trace of secretness) in @pulumi/policy's validation path", () => {
    const p = deserialize.deserializeProperties(props(), false);
    expect(p.data).toBe("c2VjcmV0");
    expect(JSON.stringify(p)).toContain("wJalrXUtnFEMI");
  });

  it("arrive as [secret] once the pack entry has installed the marker, nested or top-level", () => {
    expect(presentSecretsAsMarker(deserialize as never, Secret)).toBe(true);
    const p = deserialize.deserializeProperties(props(), false);
    expect(p).toEqual({
      name: "sidecar",
      taskSpec: { containerSpec: { env: { KDR_S3_BUCKET: "b", AWS_SECRET_ACCESS_KEY: "[secret]" } } },
      data: "[secret]",
    });
    expect(JSON.stringify(p)).not.toContain("wJalrXUtnFEMI");
    // Installing twice is harmless; the remediation path (proxySecrets) is left as the library made it.
    expect(presentSecretsAsMarker(deserialize as never, Secret)).toBe(true);
    const remediation = deserialize.deserializeProperties(props(), true);
    expect(remediation.data).toBe("c2VjcmV0");
  });

  it("refuses (changes nothing) when the library no longer has that shape", () => {
    const mod = { deserializeProperties: undefined } as never;
    expect(presentSecretsAsMarker(mod, Secret)).toBe(false);
  });
});
