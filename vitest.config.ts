import { defineConfig } from "vitest/config";

// Three projects: unit (and in-process integration) tests run in parallel; e2e tests (real TUN
// devices in private network namespaces, the kernel's ping) run one file at a time; the cluster
// test (docker-compose on a Docker engine in a private namespace) runs last, on its own.
export default defineConfig({
  test: {
    reporters: ["default", "./test/helpers/summary-reporter.ts"],
    passWithNoTests: true,
    projects: [
      {
        test: {
          name: "unit",
          include: [
            "test/unit/**/*.test.ts",
            "test/integration/**/*.test.ts",
            "test/conformance/**/*.test.ts",
            // icmpfwd vs gVisor's netstack on in-memory links: no root, no device.
            "test/differential/**/*.test.ts",
          ],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          testTimeout: 60_000,
          hookTimeout: 60_000,
          pool: "forks",
          // One file at a time: e2e files create devices, namespaces and load.
          poolOptions: { forks: { singleFork: true } },
        },
      },
      {
        test: {
          name: "cluster",
          include: ["test/cluster/**/*.test.ts"],
          // Each wait inside is bounded on its own; these are the outer bounds (the image build
          // runs debootstrap on a fresh machine: a few minutes).
          testTimeout: 240_000,
          hookTimeout: 900_000,
          pool: "forks",
          poolOptions: { forks: { singleFork: true } },
        },
      },
    ],
  },
});
