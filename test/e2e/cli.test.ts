/**
 * The command line as someone reading `--help` meets it: `icmpfwd` alone changes nothing. Run as
 * root inside a private namespace, where a device it created would show.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeNetns, Netns } from "../helpers/netns.js";
import { MAIN_JS, startServe } from "../helpers/serve.js";

describeNetns("icmpfwd with no command", () => {
  let ns: Netns;

  beforeAll(async () => {
    ns = await Netns.create("cli");
  });

  afterAll(async () => {
    await ns?.destroy();
  });

  it("prints the help and exits 2, creating no device", async () => {
    const r = await ns.exec(process.execPath, [MAIN_JS]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^Usage: icmpfwd \[options\] \[command\]/);
    expect(r.stderr).toContain("serve [options]");
    expect(r.stdout).toBe("");
    // Only the namespace's own loopback: no TUN, no address added.
    expect(await ns.sh("ip -o link show | awk '{print $2}'")).toBe("lo:\n");
    // Positive control: with `serve` named, the same namespace gets the device.
    const serve = await startServe(ns);
    try {
      expect(await ns.sh("ip -o link show | awk '{print $2}'")).toBe("lo:\nicmpfwd0:\n");
    } finally {
      await serve.stop();
    }
  });
});
