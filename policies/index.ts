/**
 * The pack entry the Pulumi CLI loads (`pulumi preview --policy-pack policies`). It is the only
 * module that constructs the PolicyPack, because construction starts the analyzer's gRPC
 * server and a second pack in one process makes it exit; tests and `kryonix-dr plan --policy`
 * use the same policy objects through evaluate.ts instead.
 */
import { PolicyPack } from "@pulumi/policy";
import { policies } from "./policies.js";
import { presentSecretsAsMarker } from "./secrets.js";

// Secrets must look the same here as in the in-process plan; see secrets.ts.
if (!presentSecretsAsMarker()) {
  console.error(
    "kryonix-dr policy pack: this @pulumi/policy no longer exposes deserializeProperties, so Pulumi secrets " +
      "cannot be told from plain strings; no-plaintext-credentials may report secret values as plain.",
  );
}

new PolicyPack("kryonix-dr", { policies, enforcementLevel: "mandatory" });
