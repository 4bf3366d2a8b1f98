import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "components/**/*.test.ts", "policies/**/*.test.ts"],
    // Pulumi mocks are process-global state; each test file gets its own process.
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 300_000,
    // Integration tests share one Docker engine, one swarm and two S3 endpoints.
    fileParallelism: false,
  },
});
