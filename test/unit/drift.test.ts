/** The drift report's logic (local/drift.ts, local/observe.ts) on hand-made observations; the real check runs in deployer.test.ts. */
import { describe, expect, it } from "vitest";
import { diffObserved, formatDrift } from "../../local/drift.js";
import { flatten } from "../../local/observe.js";

describe("flatten", () => {
  it("makes dotted paths of nested objects and keeps arrays and scalars as leaves", () => {
    expect(flatten({ Mode: { Replicated: { Replicas: 1 } }, Env: ["A=1"], Name: "x", Labels: {} })).toEqual({
      "Mode.Replicated.Replicas": 1,
      Env: ["A=1"],
      Name: "x",
      Labels: {},
    });
  });
});

describe("diffObserved", () => {
  it("lists changed, removed and added properties, nothing else", () => {
    const changes = diffObserved({ a: 1, b: ["x"], c: "same" }, { a: 2, c: "same", d: true });
    expect(changes).toEqual([
      { path: "a", deployed: 1, live: 2 },
      { path: "b", deployed: ["x"], live: undefined },
      { path: "d", deployed: undefined, live: true },
    ]);
  });
});

describe("formatDrift", () => {
  it("says plainly when nothing drifted, and which types it could not check", () => {
    const text = formatDrift({ stack: "prod", checked: 12, notChecked: { "command:local:Command": 2 }, drifted: [] });
    expect(text).toBe("no drift: 12 resources of stack 'prod' match what was deployed\nnot checked (no way to observe them): 2 command:local:Command");
  });

  it("names each drifted resource, the property, both values (lists as +added/-removed), and the fix", () => {
    const text = formatDrift({
      stack: "local",
      checked: 5,
      notChecked: {},
      drifted: [
        { type: "docker:index/service:Service", name: "sidecar", id: "abc", kind: "changed", changes: [
          { path: "Mode.Replicated.Replicas", deployed: 1, live: 0 },
          { path: "TaskTemplate.ContainerSpec.Env", deployed: ["A=1", "B=2"], live: ["A=1", "C=3"] },
        ] },
        { type: "minio:index/s3Bucket:S3Bucket", name: "critical", id: "kdr-critical", kind: "deleted", changes: [] },
      ],
    });
    expect(text.split("\n")).toEqual([
      "CHANGED  docker:index/service:Service sidecar (abc)",
      "    Mode.Replicated.Replicas: 1 -> 0",
      "    TaskTemplate.ContainerSpec.Env: +C=3 -B=2",
      "DELETED  minio:index/s3Bucket:S3Bucket critical (kdr-critical): it no longer exists",
      "DRIFT: 2 of 5 checked resources of stack 'local' differ from what was deployed",
      "to fix: undo the change by hand, or make it in the program and redeploy (kryonix-dr destroy --stack local, then deploy)",
    ]);
  });
});
