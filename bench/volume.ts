/**
 * Volumes: the seed's approach against ours, on a directory of mixed files: half the size in
 * 16 MiB files of random bytes (media, uploads: they do not compress), half in 16 KiB files of
 * base64 text (configs, JSON, small documents).
 *
 *   seed: tar -czf file -C <dir> ., then upload (the seed's backupMinIO after its mirror)
 *   ours: kdr-agent backup --type full (restic: content-defined chunks, deduplicated, AES,
 *         into the service's repository in S3; manifest and catalog row)
 *
 * Each restore ends with the tree on disk, every file's SHA-256 checked against the source. The
 * incremental rewrites small files worth 1% of the bytes.
 */
import { mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { AGENT_ENV } from "../contract/index.js";
import { agentWorld } from "../test/support/s3.js";
import { agentCommand, backupOurs, measureLimits, median, MiB, newRow, runAgent, s3, timed, timedAsync, type Row, type SizeResult } from "./measure.js";

const SEED = "seed: tar -czf, then upload";
const OURS = "ours: restic (chunks, dedup, AES), S3";
const SMALL = 16 * 1024;

/** File count, bytes and one SHA-256 over every file's SHA-256 and path, sorted. */
const fingerprint = (dir: string) => timed(`cd ${dir} && echo "$(find . -type f | wc -l) files, sha256 $(find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"`).stdout.trim();

export async function benchVolume(sizes: number[], runs: number, say: (m: string) => void): Promise<SizeResult[]> {
  const w = await agentWorld("kdrbench-volume");
  const work = path.join(w.root, "bench");
  const vol = path.join(w.root, "volume");
  mkdirSync(work, { recursive: true });
  mkdirSync(path.join(vol, "large"), { recursive: true });
  mkdirSync(path.join(vol, "small"), { recursive: true });
  const results: SizeResult[] = [];
  try {
    const store = s3(w.bucket.client, w.bucket.bucket);
    let large = 0;
    let small = 0;
    for (const target of sizes) {
      // Grows to the size: each half topped up with new files.
      const wantLarge = Math.max(1, Math.floor(target / 2 / 16));
      for (; large < wantLarge; large++) timed(`head -c 16M /dev/urandom > ${vol}/large/f${large}`);
      const wantSmall = Math.ceil((target * MiB - wantLarge * 16 * MiB) / SMALL);
      if (wantSmall > small) {
        timed(`cd ${vol}/small && head -c ${((wantSmall - small) * SMALL * 3) / 4} /dev/urandom | base64 -w 0 | split -b ${SMALL} -a 6 - g${target}-`);
        small = wantSmall;
      }
      const dataBytes = Number(timed(`du -sb ${vol} | cut -f1`).stdout.trim());
      const expected = fingerprint(vol);
      say(`volume ${target} MiB: ${large} large and ${small} small files, ${(dataBytes / MiB).toFixed(0)} MiB`);
      const limits = await measureLimits(`tar -cf - -C ${vol} .`, store, `limits/volume-${target}.zst`, path.join(work, "limits.zst"));
      const check = (dir: string, what: string) => {
        const got = fingerprint(dir);
        if (got !== expected) throw new Error(`${what} gave back ${got}, not ${expected}: the benchmark stops rather than time a broken restore.`);
      };

      // A repository of its own per run: each full stores the whole data, as tar.gz does (a full
      // into a repository that holds the data already reads every file and stores next to nothing).
      const agentOf = (run: number) => agentCommand(w.env(`bench-volume-${target}-${run}`, { [AGENT_ENV.engine]: "volume", [AGENT_ENV.volumePath]: vol }));
      const repoOf = (run: number) => `restic/bench-volume-${target}-${run}/`;
      const table: Record<string, Row> = { [SEED]: newRow(), [OURS]: newRow() };
      for (let run = 1; run <= runs; run++) {
        say(`volume ${target} MiB: run ${run}/${runs}`);
        {
          const r = table[SEED]!;
          const file = path.join(work, "volume.tar.gz");
          const dump = timed(`tar -czf ${file} -C ${vol} .`);
          const up = await timedAsync(() => store.upload(`seed/volume-${target}-${run}.tar.gz`, file));
          r.backupWall.push(dump.wall + up.wall);
          r.backupCpu.push(dump.cpu + up.cpu);
          r.stored.push(up.value);
          rmSync(file);
          const dir = path.join(work, `seed-restore-${run}`);
          mkdirSync(dir);
          const dl = await timedAsync(() => store.download(`seed/volume-${target}-${run}.tar.gz`, file));
          const x = timed(`tar -xzf ${file} -C ${dir}`);
          try {
            check(dir, "tar -xzf");
          } finally {
            rmSync(dir, { recursive: true, force: true });
            rmSync(file, { force: true });
            await store.drop(`seed/volume-${target}-${run}.tar.gz`);
          }
          r.restoreWall.push(dl.wall + x.wall);
          r.restoreCpu.push(dl.cpu + x.cpu);
        }
        {
          const r = table[OURS]!;
          const agent = agentOf(run);
          const sum = backupOurs(agent, r);
          // What the bucket holds, not restic's data_added (new chunks before its compression).
          r.stored[r.stored.length - 1] = await store.bytesUnder(repoOf(run));
          const dir = path.join(work, `restore-${run}`);
          const rest = runAgent(agent, `restore --target ${dir} --backup-id ${sum.backupId}`);
          try {
            check(dir, "kdr-agent restore");
          } finally {
            rmSync(dir, { recursive: true, force: true });
            // The last run's repository takes the incremental below.
            if (run < runs) await store.drop(repoOf(run));
          }
          r.restoreWall.push(rest.wall);
          r.restoreCpu.push(rest.cpu);
          r.restorePeak.push(rest.peakBytes);
        }
      }
      // Small files worth 1% of the bytes rewritten with new content.
      const rewrite = Math.max(1, Math.floor((dataBytes * 0.01) / SMALL));
      timed(`cd ${vol}/small && ls | sed -n "1,${rewrite}p" | while read f; do head -c ${(SMALL * 3) / 4} /dev/urandom | base64 -w 0 > "$f"; done`);
      const before = await store.bytesUnder(repoOf(runs));
      runAgent(agentOf(runs), "backup --type incremental --json", false);
      const incBytes = (await store.bytesUnder(repoOf(runs))) - before;
      await store.drop(repoOf(runs));
      results.push({
        engine: "volume",
        targetMiB: target,
        dataBytes,
        what: `${large} files of 16 MiB, random; ${small} of 16 KiB, base64 text`,
        limits,
        pipelines: table,
        incremental: { change: `rewriting ${rewrite} small files (1% of the bytes)`, storedBytes: incBytes, fullStoredBytes: median(table[OURS]!.stored) },
        restoreNote:
          "Each restore ends with the tree on disk, every file's SHA-256 checked (ours also has restic's `restore --verify` read every file back). Each of our fulls goes into an empty repository, so it stores the whole data as tar.gz does (a later full into the same repository reads every file again and stores only chunks it lacks); our stored bytes are what the bucket holds under the repository.",
      });
    }
    return results;
  } finally {
    await w.close();
  }
}
