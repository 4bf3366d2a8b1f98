/**
 * compressionWorkers: zstd's threads follow the container's CPU limit (cgroup v2 cpu.max, v1
 * cpu.cfs_quota_us), not the host's cores. The cgroup files are given as a map; the last test reads
 * the real ones of the process running it.
 */
import { availableParallelism } from "node:os";
import { describe, expect, it } from "vitest";
import { compressionWorkers } from "../../agent/storage/pipeline.js";

/** The cgroup files under /sys/fs/cgroup, by path; a file not in the map does not exist. */
function files(map: Record<string, string>): (file: string) => string | undefined {
  return (f) => map[f];
}

describe("compressionWorkers", () => {
  it("takes cgroup v2's quota, rounded up, under the CPUs the process can run on", () => {
    expect(compressionWorkers(files({ "cpu.max": "50000 100000\n" }), 64)).toBe(1);
    expect(compressionWorkers(files({ "cpu.max": "150000 100000\n" }), 64)).toBe(2);
    expect(compressionWorkers(files({ "cpu.max": "800000 100000\n" }), 4)).toBe(4);
  });

  it("uses every CPU when v2 says max", () => {
    expect(compressionWorkers(files({ "cpu.max": "max 100000\n" }), 12)).toBe(12);
  });

  it("falls back to cgroup v1's quota and period; -1 means no limit", () => {
    const v1 = (q: string) => files({ "cpu/cpu.cfs_quota_us": q, "cpu/cpu.cfs_period_us": "100000\n" });
    expect(compressionWorkers(v1("100000\n"), 64)).toBe(1);
    expect(compressionWorkers(v1("250000\n"), 64)).toBe(3);
    expect(compressionWorkers(v1("-1\n"), 8)).toBe(8);
  });

  it("with no cgroup files at all uses the CPUs; nonsense in them, or no CPUs counted, gives 1", () => {
    expect(compressionWorkers(files({}), 6)).toBe(6);
    expect(compressionWorkers(files({ "cpu.max": "garbage" }), 6)).toBe(1);
    expect(compressionWorkers(files({}), 0)).toBe(1);
  });

  it("on this machine is between 1 and its CPUs", () => {
    const n = compressionWorkers();
    expect(n).toBeGreaterThanOrEqual(1);
    expect(n).toBeLessThanOrEqual(availableParallelism());
  });
});
