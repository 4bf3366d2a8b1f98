/** The recovery stack: fresh volumes, run-once restore jobs that finish before the services start. */
import { beforeAll, describe, expect, it } from "vitest";
import { AGENT_ENV, LABELS } from "../../../contract/index.js";
import { byType, isSecret, labelsOf, one, plainLeaks, reveal, runProgram, setupMocks, stackFileConfig, testSecretValue, type Registration } from "../../support/mocks.js";

const CONTAINER = "docker:index/container:Container";
let regs: Registration[];
let secretKeys: string[];
let outputs: Record<string, unknown>;

beforeAll(async () => {
  const file = stackFileConfig("recovery");
  secretKeys = file.secretKeys ?? [];
  file.config.recovery = { ...(file.config.recovery as object), point: "2026-11-28T20:15:00Z" };
  // A restore takes time: the fresh service must still come after it.
  regs = await setupMocks({ ...file, stack: "recovery", slow: { [CONTAINER]: 150 } });
  outputs = await runProgram();
});

const envList = (r: Registration) => Object.fromEntries((reveal<string[]>(r.inputs.envs) ?? []).map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]));

describe("recovery stack", () => {
  it("declares a run-once restore job per service, at the configured recovery point", () => {
    const jobs = byType(regs, CONTAINER);
    expect(jobs.map((j) => j.name).sort()).toEqual(["recover-files-restore", "recover-postgresql-restore", "recover-redis-restore"]);
    for (const j of jobs) {
      expect(j.inputs).toMatchObject({ attach: true, mustRun: false, restart: "no", logs: true });
      expect(j.inputs.entrypoints).toEqual(["node", "/opt/kryonix-dr/agent.cjs"]);
      expect((j.inputs.command as string[]).slice(0, 3)).toEqual(["restore", "--target", expect.stringMatching(/^\//)]);
      expect((j.inputs.command as string[]).slice(3)).toEqual(["--time", "2026-11-28T20:15:00.000Z"]);
      expect(envList(j)[AGENT_ENV.recoveryPoint]).toBe("2026-11-28T20:15:00.000Z");
    }
    expect(outputs.recoveryPoint).toBe("2026-11-28T20:15:00.000Z");
  });

  it("restores into a fresh volume that the fresh service then mounts", () => {
    const job = one(regs, CONTAINER, "recover-postgresql-restore");
    const volume = one(regs, "docker:index/volume:Volume", "recover-postgresql-volume");
    expect(volume.inputs.name).toBe("kdr-local-postgresql-restored");
    expect(job.inputs.mounts).toEqual([{ type: "volume", source: "kdr-local-postgresql-restored", target: "/var/lib/postgresql/data" }]);
    const service = byType(regs, "docker:index/service:Service").find((s) => s.inputs.name === "kdr-local-postgresql")!;
    expect(labelsOf(service.inputs)[LABELS.stateful]).toBe("true");
    expect((service.inputs.taskSpec as any).containerSpec.mounts).toEqual([{ type: "volume", source: "kdr-local-postgresql-restored", target: "/var/lib/postgresql/data" }]);
  });

  it("starts each fresh service only after its restore job finished", () => {
    for (const name of ["postgresql", "redis", "files"]) {
      const job = one(regs, CONTAINER, `recover-${name}-restore`);
      const service = byType(regs, "docker:index/service:Service").find((s) => s.inputs.name === `kdr-local-${name}`)!;
      expect(service.seq, name).toBeGreaterThan(job.doneSeq!);
    }
  });

  it("hands the restore job its credentials as uploaded files, including the age identity", () => {
    const job = one(regs, CONTAINER, "recover-files-restore");
    expect(isSecret(job.inputs.uploads)).toBe(true);
    const files = reveal<Array<{ file: string; permissions: string }>>(job.inputs.uploads).map((u) => u.file).sort();
    expect(files).toEqual([
      "/run/secrets/kdr-age-identity",
      "/run/secrets/kdr-catalog-password",
      "/run/secrets/kdr-restic-password",
      "/run/secrets/kdr-s3-access-key",
      "/run/secrets/kdr-s3-secret-key",
    ]);
    expect(isSecret(job.inputs.envs)).toBe(false);
  });

  it("reads with a restore user on the existing buckets and resumes protection with sidecars", () => {
    expect(byType(regs, "minio:index/s3Bucket:S3Bucket")).toEqual([]);
    expect(byType(regs, "minio:index/iamUser:IamUser").map((u) => u.inputs.name).sort()).toEqual([
      "kdr-recovery-restore",
      "kdr-recovery-sidecar-files",
      "kdr-recovery-sidecar-postgresql",
      "kdr-recovery-sidecar-redis",
    ]);
    const job = one(regs, CONTAINER, "recover-redis-restore");
    expect(envList(job)[AGENT_ENV.s3Bucket]).toBe("kdr-local-backups-critical");
    const sidecars = byType(regs, "docker:index/service:Service").filter((s) => labelsOf(s.inputs)[LABELS.role] === "sidecar");
    expect(sidecars.map((s) => labelsOf(s.inputs)[LABELS.protects]).sort()).toEqual(["files", "postgresql", "redis"]);
  });

  it("gives each fresh service the stable name clients use (recovery.stableNames defaults to true)", () => {
    const svc = one(regs, "docker:index/service:Service", "recover-postgresql-service-service");
    const nets = reveal<Array<{ aliases?: string[] }>>((svc.inputs.taskSpec as { networksAdvanceds: unknown }).networksAdvanceds) ?? [];
    expect(nets.length).toBeGreaterThan(0);
    for (const n of nets) expect(n.aliases).toEqual(["postgresql"]);
  });

  it("keeps every credential secret", () => {
    expect(plainLeaks(regs, secretKeys.map(testSecretValue))).toEqual([]);
  });
});
