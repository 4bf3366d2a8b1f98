/**
 * `kryonix-dr catalog rebuild|restore`: a catalog from one region's buckets alone, when the old
 * one is lost (local/catalog-recovery.ts does the work). For a deployment of the local platform
 * the inputs come from its state; the recovery stack (recovery.catalog) passes them as JSON in
 * the environment instead (--from-env), so `pulumi up` runs the same procedure.
 */
import { TOOL_ENV } from "../../contract/index.js";
import { DEPLOYMENTS_DIR } from "../../local/deployer.js";
import { createCatalogDatabase, databaseExists, localInputs, markRecovered, rebuildCatalog, recoveredMark, restoreCatalog, type CatalogRecoveryInputs } from "../../local/catalog-recovery.js";
import { readPlatform } from "../../local/platform.js";
import { parseFlags, UsageError, type Command } from "../command.js";

const USAGE = `Usage: kryonix-dr catalog rebuild --region <primary|dr> [--stack <name>] [--database <name>] [--json]
       kryonix-dr catalog restore --region <primary|dr> [--time <ISO time>] [--replace] [--database <name>] [--restore-only] [--stack <name>] [--json]
       kryonix-dr catalog <rebuild|restore> --from-env [--time <ISO time>] [--json]

Gets a backup catalog back from one region's buckets alone (the catalog database itself lost).

  rebuild   creates the catalog database (it must not exist; migrated) and fills it from every
            bucket's manifests and WAL descriptors, with that region's version ids. Run again, it
            changes nothing. --database names another database (e.g. to compare with the live one).
  restore   restores the catalog database to a point in time (--time, default the newest the
            region holds) from the region's backups of the catalog server (service kdr-catalog,
            catalog.backup), then adds the backups newer than that point as rebuild does.
            Refuses an existing catalog database unless --replace (the restore is made aside
            and only then replaces it). --database restores into another database (the live one
            untouched, e.g. to look at the catalog as it was); --restore-only skips adding the
            newer backups.

  --stack     the local platform's deployment whose buckets, keys and catalog are used (default local)
  --from-env  inputs from ${TOOL_ENV.catalogRecovery} (JSON; what the recovery stack sets). A catalog
              database an earlier run made (its comment says so) is then left as it is, so a
              later 'pulumi up' of the recovery stack does not fail or start over.
  --json      the result as JSON on stdout (progress stays on stderr)`;

export const command: Command = {
  name: "catalog",
  summary: "Rebuild or restore the backup catalog from one region's buckets (the catalog lost)",
  usage: USAGE,
  async run(argv) {
    const { values, positionals } = parseFlags(
      argv,
      {
        region: { type: "string" },
        stack: { type: "string" },
        database: { type: "string" },
        time: { type: "string" },
        replace: { type: "boolean" },
        "restore-only": { type: "boolean" },
        "from-env": { type: "boolean" },
        json: { type: "boolean" },
      },
      true,
    );
    const action = positionals[0];
    if (action !== "rebuild" && action !== "restore") throw new UsageError(`'kryonix-dr catalog ${positionals.join(" ")}' is not a command: use 'catalog rebuild' or 'catalog restore'.`);
    if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}'.`);
    const time = values.time === undefined ? undefined : new Date(values.time);
    if (time && Number.isNaN(time.getTime())) throw new UsageError(`--time '${values.time}' is not a time: give ISO 8601 with a zone, e.g. 2026-12-01T10:00:00Z.`);
    if (time && action === "rebuild") throw new UsageError("--time applies to 'catalog restore' (a rebuild takes every backup the region holds).");
    const log = (l: string) => process.stderr.write(`${l}\n`);
    let inp: CatalogRecoveryInputs;
    if (values["from-env"]) {
      const raw = process.env[TOOL_ENV.catalogRecovery];
      if (!raw) throw new UsageError(`--from-env needs ${TOOL_ENV.catalogRecovery} (JSON inputs; the recovery stack sets it).`);
      inp = { ...(JSON.parse(raw) as Omit<CatalogRecoveryInputs, "log">), log };
    } else {
      if (values.region !== "primary" && values.region !== "dr") throw new UsageError(`--region must be primary or dr${values.region ? `, got '${values.region}'` : ""}.`);
      inp = localInputs({ platform: readPlatform(), stack: values.stack ?? "local", stateDir: DEPLOYMENTS_DIR, region: values.region, log });
    }
    if (values["restore-only"] && action === "rebuild") throw new UsageError("--restore-only applies to 'catalog restore'.");
    const into = values.database ?? inp.catalog.database;
    let result: unknown;
    // The recovery stack's step runs again on a later `pulumi up` that changes its inputs: a
    // catalog it already got back is left as it is (a new one would lose what was written since).
    const earlier = values["from-env"] && (await databaseExists(inp, into)) ? await recoveredMark(inp, into) : undefined;
    if (earlier !== undefined) {
      log(`catalog ${action}: ${into} was already got back by an earlier run (${earlier}); left as it is`);
      result = { database: into, region: inp.region.name, alreadyRecovered: earlier };
    } else if (action === "rebuild") {
      if (await databaseExists(inp, into)) {
        throw new Error(`the catalog database ${into} exists: a rebuild creates a new one. To add a region's copies to a live catalog run 'kdr-agent catalog rebuild' in a container; to compare, pass --database <new name>.`);
      }
      await createCatalogDatabase(inp, into, { migrate: true });
      const rebuilt = await rebuildCatalog(inp, into);
      await markRecovered(inp, into, `rebuild from ${inp.region.name}`);
      result = { database: into, region: inp.region.name, buckets: rebuilt };
      const skipped = rebuilt.flatMap((r) => r.skipped);
      log(
        `catalog rebuild: ${into} holds ${rebuilt.reduce((n, r) => n + r.backups.inserted, 0)} backup(s) and ${rebuilt.reduce((n, r) => n + r.walSegments.inserted, 0)} WAL segment(s) from ${inp.region.name}` +
          (skipped.length ? `; skipped ${skipped.length}: ${skipped.map((s) => `${s.key} (${s.reason})`).join("; ")}` : "; nothing skipped"),
      );
    } else {
      const r = await restoreCatalog(inp, { time, replace: values.replace, into, restoreOnly: values["restore-only"] });
      result = r;
      log(
        `catalog restore: ${r.database} restored from the catalog server's backup ${r.backupId} to ${r.reaches} (target ${r.recoveryTarget}) in ${r.durationSeconds.toFixed(1)} s; ` +
          `then ${r.rebuild.reduce((n, b) => n + b.backups.inserted, 0)} newer backup(s) and ${r.rebuild.reduce((n, b) => n + b.walSegments.inserted, 0)} WAL segment(s) added from ${inp.region.name}`,
      );
    }
    if (values.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return 0;
  },
};
