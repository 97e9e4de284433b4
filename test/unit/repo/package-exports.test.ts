import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { BUILD_TIMEOUT_MS, ensureDist } from "../../helpers/dist.js";

const root = fileURLToPath(new URL("../../..", import.meta.url));

describe("package exports", () => {
  // The exports point into dist/: build it if it is missing or stale.
  beforeAll(ensureDist, BUILD_TIMEOUT_MS);

  it("resolves icmpfwd/netstack and icmpfwd/link to the built API with type declarations", () => {
    expect(existsSync(`${root}/dist/netstack/index.d.ts`)).toBe(true);
    expect(existsSync(`${root}/dist/link/index.d.ts`)).toBe(true);
    const script = `
      const n = await import("icmpfwd/netstack");
      const l = await import("icmpfwd/link");
      console.log([typeof n.Forwarder, typeof n.Stack, typeof n.sendSyntheticEchoReply, typeof l.TunEndpoint, typeof l.ChannelEndpoint].join(","));`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      cwd: root,
      encoding: "utf8",
    });
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("function,function,function,function,function");
  });
});
