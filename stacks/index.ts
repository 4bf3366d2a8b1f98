/**
 * The program's entry: reads and validates config once, then composes the stack for its role
 * (config `kryonix-dr:role`, default the stack name). The returned object is the stack outputs.
 */
import { loadConfig, type Role, type Secrets, type Specs } from "./config.js";
import { dr } from "./dr.js";
import { local } from "./local.js";
import { prod } from "./prod.js";
import { recovery } from "./recovery.js";

const COMPOSITIONS: Record<Role, (specs: Specs, secrets: Secrets) => Record<string, unknown>> = { prod, dr, recovery, local };

export = async (): Promise<Record<string, unknown>> => {
  const { specs, secrets } = loadConfig();
  return COMPOSITIONS[specs.role](specs, secrets);
};
