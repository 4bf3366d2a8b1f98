/**
 * The only place stack config is read. `loadConfig()` (config/load.ts) reads the raw groups and
 * secrets; `parseSpecs()` (config/parse.ts, pure) validates them once and turns them into the plain
 * typed specs (config/schema.ts) the compositions hand to components. Every rejection is a
 * ConfigError whose message names the key and the fix, so a bad `Pulumi.<stack>.yaml` fails at the
 * stack entry, before any resource.
 */
export * from "./config/schema.js";
export { parseServiceSpecs, parseSpecs } from "./config/parse.js";
export { loadConfig, type Secrets } from "./config/load.js";
