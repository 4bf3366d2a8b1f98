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
    // The AWS SDK's once-per-process notice about Node versions, which the agent turns off too
    // (agent/cli.ts): in every test worker it is noise around the results.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" },
  },
});
