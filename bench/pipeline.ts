/**
 * Benchmark: the seed's backup pipelines against ours as the data grows, on the same data, the
 * same S3 server (the local RGW) and the same machine, in one run: PostgreSQL (postgres.ts),
 * Redis (redis.ts) and a volume of mixed files (volume.ts).
 *
 * At each size of each engine: the pipelines alternate, run after run; wall seconds, CPU seconds
 * (user+sys of the whole process tree, from bash's `time`) and stored bytes are medians of --runs;
 * our agent's peak memory (the largest resident set in its process tree, GNU time's %M); an
 * incremental after a 1% change where an incremental is not a whole copy; and the machine's
 * limits on the same bytes (reading them, zstd -T0 at the agent's level, the S3 server's put and
 * get with a plain client), each pipeline's throughput shown as a fraction of the slowest limit
 * its path goes through. Every restore is checked whole (rows counted, values and files hashed):
 * a timing of a restore that lost data would be worthless.
 *
 * Run: npm run bench -- [--sizes 200,1024,4096] [--redis-sizes 256] [--volume-sizes 1024]
 *      [--engines postgres,redis,volume] [--runs 3] [--out docs/benchmarks.md] [--json docs/benchmarks.json]
 *      --quick: one small size of each engine, one run (the test suite runs it).
 * Sizes are MiB (PostgreSQL: on disk, all databases). Needs `bash scripts/platform-up.sh`.
 * Not a test: nothing here passes or fails on a time.
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { parseArgs } from "node:util";
import { PG_BIN } from "../test/support/tmp-postgres.js";
import { renderSize, type SizeResult } from "./measure.js";
import { benchPostgres } from "./postgres.js";
import { benchRedis } from "./redis.js";
import { benchVolume } from "./volume.js";

const ENGINES = ["postgres", "redis", "volume"] as const;
type Engine = (typeof ENGINES)[number];

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "200,1024,4096" },
    "redis-sizes": { type: "string", default: "256" },
    "volume-sizes": { type: "string", default: "1024" },
    engines: { type: "string", default: ENGINES.join(",") },
    runs: { type: "string", default: "3" },
    quick: { type: "boolean", default: false },
    out: { type: "string" },
    json: { type: "string" },
  },
});

function sizes(flag: string, text: string): number[] {
  const xs = text.split(",").map((x) => Number(x.trim()));
  if (!xs.length || xs.some((x) => !Number.isInteger(x) || x < 16)) throw new Error(`${flag} takes whole MiB of at least 16, comma-separated (got '${text}').`);
  return xs.sort((a, b) => a - b);
}

const RUNS = values.quick ? 1 : Number(values.runs);
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`--runs takes a whole number >= 1 (got '${values.runs}').`);
const engines = values.engines!.split(",").map((e) => e.trim()) as Engine[];
for (const e of engines) if (!ENGINES.includes(e)) throw new Error(`--engines: '${e}' is not one of ${ENGINES.join(", ")}.`);
const plan: Record<Engine, number[]> = {
  postgres: values.quick ? [32] : sizes("--sizes", values.sizes!),
  redis: values.quick ? [16] : sizes("--redis-sizes", values["redis-sizes"]!),
  volume: values.quick ? [32] : sizes("--volume-sizes", values["volume-sizes"]!),
};
const TITLES: Record<Engine, string> = { postgres: "PostgreSQL", redis: "Redis", volume: "Volume" };

async function main(): Promise<void> {
  // The AWS SDK's notice about Node versions, off as in the agent and the CLI.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const say = (m: string) => process.stderr.write(`bench: ${m}\n`);
  const results: SizeResult[] = [];
  const run = { postgres: benchPostgres, redis: benchRedis, volume: benchVolume };
  for (const e of engines) results.push(...(await run[e](plan[e], RUNS, say)));

  const cpu = cpus();
  const machine = {
    cpus: cpu.length,
    cpuModel: cpu[0]?.model ?? "?",
    memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
    kernel: release(),
    postgres: spawnSync(`${PG_BIN}/postgres`, ["--version"], { encoding: "utf8" }).stdout.trim(),
    s3: "Ceph RGW on this machine (the local platform's primary region)",
  };
  const report = { date: new Date().toISOString(), runs: RUNS, machine, sizes: results };
  const lines = [
    `Run ${report.date.slice(0, 16).replace("T", " ")} UTC on ${machine.cpus} x ${machine.cpuModel}, ${machine.memoryGiB} GiB RAM, Linux ${machine.kernel}, ${machine.postgres}, S3: ${machine.s3}. Medians of ${RUNS} run(s); ratios against the seed's pipelines in the same run (below 1: ours takes less time). Our pipelines encrypt, the seed's do not.`,
  ];
  for (const s of results) lines.push("", ...renderSize(s, TITLES[s.engine]));
  const text = lines.join("\n");
  process.stdout.write(`${text}\n`);
  if (values.out) writeFileSync(values.out, `${text}\n`);
  if (values.json) writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
}

main().catch((e: Error) => {
  process.stderr.write(`bench: ${e.message}\n`);
  process.exit(1);
});
