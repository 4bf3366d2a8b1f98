import { describe, expect, it } from "vitest";
import { oomHint } from "../../agent/storage/pipeline.js";

describe("a tool killed by SIGKILL: the container's memory limit named when the cgroup counted an OOM kill", () => {
  it("names the limit in MiB, the count and the setting to raise", () => {
    const events = "low 0\nhigh 0\nmax 812\noom 3\noom_kill 3\noom_group_kill 0\n";
    expect(oomHint(events, "268435456\n")).toBe(
      " The container reached its memory limit (256 MiB): the kernel killed it (3 out-of-memory kill(s) in this container so far). Raise kryonix-dr:sidecar.memoryMiB (or the service's own limits) and deploy again.",
    );
  });
  it("says nothing without an OOM kill, or outside a cgroup v2 container", () => {
    expect(oomHint("low 0\noom 0\noom_kill 0\n", "268435456")).toBe("");
    expect(oomHint(undefined, undefined)).toBe("");
  });
  it("an unlimited container (memory.max 'max'): the machine's memory is named", () => {
    expect(oomHint("oom_kill 1\n", "max\n")).toMatch(/^ The machine ran out of memory: the kernel killed it \(1 out-of-memory/);
  });
});
