/** Every resource type the local deployer supports, by its Pulumi type token. */
import { commandMappings } from "./command.js";
import { dockerConnection, dockerMappings } from "./docker.js";
import { container } from "./docker-container.js";
import { minioMappings } from "./minio.js";
import { postgresqlMappings } from "./postgresql.js";
import type { Mapping } from "./types.js";

export const MAPPINGS: ReadonlyMap<string, Mapping<any>> = new Map(
  [...dockerMappings, container, ...minioMappings, ...postgresqlMappings, ...commandMappings].map((m) => [m.type, m]),
);

/** Packages whose provider resources (`pulumi:providers:<pkg>`) carry connection settings. */
export const PROVIDER_PACKAGES = ["docker", "minio", "postgresql", "command"] as const;

/** A provider's inputs as the settings its mappings read (docker keeps only the host). */
export function providerSettings(pkg: string, inputs: Record<string, unknown>): Record<string, unknown> {
  return pkg === "docker" ? dockerConnection(inputs) : { ...inputs };
}

/** The package of a type token ("docker:index/service:Service" → "docker"). */
export function packageOf(type: string): string {
  return type.split(":")[0]!;
}

export function unsupported(type: string, name: string): Error {
  return new Error(
    `The local deployer does not support resource type ${type} (resource '${name}'). Supported types: ${[...MAPPINGS.keys()].sort().join(", ")}.`,
  );
}
