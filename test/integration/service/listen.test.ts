/** Where the service listens: a TCP port (0: any free one) or a unix socket it cleans up. */
import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { resolveConfig } from "../../../src/config.js";
import { serviceOptionsOf } from "../../../src/daemon/components.js";
import { FAIL_OPEN } from "../../../src/service/dispatcher.js";
import { EchoService } from "../../../src/service/index.js";
import { tempDir } from "../../helpers/netns.js";
import { TestClient } from "./harness.js";

const options = { ...serviceOptionsOf(resolveConfig({})), deadlineMs: 100, policy: FAIL_OPEN };

describe("listening", () => {
  it("reports the bound port for port 0 and refuses an address in use", async () => {
    const a = await EchoService.start({ ...options, listen: "127.0.0.1:0" });
    try {
      expect(a.address).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
      await expect(EchoService.start({ ...options, listen: a.address })).rejects.toThrow();
    } finally {
      await a.close();
    }
  });

  it("serves on a unix socket, and removes the socket file when it stops", async () => {
    const path = join(tempDir("icmpfwd-sock-"), "s.sock");
    const s = await EchoService.start({ ...options, listen: `unix:${path}` });
    const c = await TestClient.connect(`unix:${path}`);
    try {
      expect(s.address).toBe(`unix:${path}`);
      expect(c.welcome?.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      c.close();
      await s.close();
    }
    expect(existsSync(path)).toBe(false);
  });

  it("replaces a stale socket file nobody listens on, but never a regular file", async () => {
    const dir = tempDir("icmpfwd-sock-");
    const stale = join(dir, "stale.sock");
    // A process killed while listening leaves its socket file behind.
    spawnSync(process.execPath, [
      "-e",
      `require("node:net").createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, "SIGKILL"))`,
    ]);
    expect(existsSync(stale)).toBe(true);
    const second = await EchoService.start({ ...options, listen: `unix:${stale}` });
    await second.close();
    const file = join(dir, "file.sock");
    writeFileSync(file, "not a socket");
    await expect(EchoService.start({ ...options, listen: `unix:${file}` })).rejects.toThrow();
    expect(existsSync(file)).toBe(true);
  });
});
