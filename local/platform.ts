/**
 * The local platform's facts, as `scripts/platform-up.sh` publishes them. Tests, the local
 * deployer and the drill read the endpoints and credentials from here; nothing else in the
 * repository hard-codes an address, a port or a credential of the local platform.
 */
import { readFileSync, existsSync } from "node:fs";
import { TOOL_ENV } from "../contract/index.js";

/** Where platform-up.sh writes the facts (outside the checkout, so CI's fresh clone finds them). */
export const PLATFORM_FILE = process.env[TOOL_ENV.platformFile] ?? "/var/lib/kryonix-dr/platform.json";

export interface S3Region {
  /** Region name (also the S3 signing region). */
  name: string;
  /** Endpoint reachable from the host and from Swarm containers (bound on the docker_gwbridge gateway). */
  endpoint: string;
  /** Same server on loopback. */
  loopbackEndpoint: string;
  /** Admin (system) user's credentials: can create users, buckets and policies. */
  accessKey: string;
  secretKey: string;
  /** RGW lifecycle debug interval: one lifecycle "day" lasts this many seconds. */
  lcDebugIntervalSeconds: number;
}

export interface Platform {
  /** docker_gwbridge gateway address: how Swarm containers reach servers on the host. */
  gatewayIp: string;
  regions: { primary: S3Region; dr: S3Region };
  /** PostgreSQL 15 on the host that holds the backup catalog (a superuser's credentials). */
  catalog: { host: string; port: number; user: string; password: string };
  /** Local image tags built by platform-up. */
  images: { base: string; agent: string; postgres: string; redis: string; files: string; prometheus: string; standins: string };
  /** Host tools platform-up unpacked: promtool (checks and unit-tests the generated alert rules). */
  tools: { promtool: string };
}

/** Reads the platform facts, or throws an error that says how to bring the platform up. */
export function readPlatform(file: string = PLATFORM_FILE): Platform {
  if (!existsSync(file)) {
    throw new Error(
      `The local platform is not up: ${file} does not exist. Run 'bash scripts/platform-up.sh' (or 'npm run platform:up') first.`,
    );
  }
  const p = JSON.parse(readFileSync(file, "utf8")) as Partial<Platform>;
  const missing = (["gatewayIp", "regions", "catalog", "images", "tools"] as const).filter((k) => p[k] === undefined);
  if (missing.length > 0) {
    throw new Error(`${file} lacks ${missing.join(", ")}: an older platform-up wrote it. Run 'bash scripts/platform-up.sh' again (it changes only what is missing).`);
  }
  return p as Platform;
}
