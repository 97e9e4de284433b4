import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { BUILD_TIMEOUT_MS, ensureDist } from "../../helpers/dist.js";

const root = fileURLToPath(new URL("../../..", import.meta.url));

/** Runs `script` as an ES module from the package root (so `icmpfwd/...` resolves to dist/). */
function runModule(script: string): { stdout: string; stderr: string } {
  return spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    cwd: root,
    encoding: "utf8",
  });
}

/** What an embedder builds with: the stack, the Forwarder, addresses and the header views. */
const NETSTACK_API = [
  "Stack",
  "DEFAULT_NETWORK_PROTOCOLS",
  "newIPv4Protocol",
  "newIPv6Protocol",
  "Forwarder",
  "ForwarderRequest",
  "Decision",
  "sendSyntheticEchoReply",
  "copyEchoRequest",
  "Subnet",
  "parseAddress",
  "formatAddress",
  "parseAddressWithPrefix",
  "IPv4Header",
  "IPv6Header",
  "ICMPv4Header",
  "ICMPv6Header",
  "ICMPV4_ECHO",
  "ICMPV4_ECHO_REPLY",
  "ICMPV6_ECHO_REQUEST",
  "ICMPV6_ECHO_REPLY",
  "ICMPV4_PROTOCOL_NUMBER",
  "ICMPV6_PROTOCOL_NUMBER",
  "checksum",
];

/** Internals the package must not expose (reachable only inside src/netstack). */
const NETSTACK_INTERNALS = [
  "PingRegistry",
  "addressKey",
  "addressCopyAt",
  "solicitedNodeMulticast",
  "IPv4Protocol",
  "IPv6Protocol",
  "handleICMPv4",
  "deliverEchoRequest",
  "BuiltInEchoReply",
  "HookChains",
  "Reassembler",
  "replyHookSlot",
];

describe("package exports", () => {
  // The exports point into dist/: build it if it is missing or stale.
  beforeAll(ensureDist, BUILD_TIMEOUT_MS);

  it("resolves icmpfwd/netstack and icmpfwd/link to the built API with type declarations", () => {
    expect(existsSync(`${root}/dist/netstack/index.d.ts`)).toBe(true);
    expect(existsSync(`${root}/dist/link/index.d.ts`)).toBe(true);
    const r = runModule(`
      const n = await import("icmpfwd/netstack");
      const l = await import("icmpfwd/link");
      console.log([typeof n.Forwarder, typeof n.Stack, typeof n.sendSyntheticEchoReply, typeof l.TunEndpoint, typeof l.ChannelEndpoint].join(","));`);
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("function,function,function,function,function");
  });

  it("icmpfwd/netstack names its surface: the stack, the Forwarder, the header views, no internals", () => {
    const r = runModule(`
      const n = await import("icmpfwd/netstack");
      console.log(JSON.stringify({
        missing: ${JSON.stringify(NETSTACK_API)}.filter((k) => n[k] === undefined),
        leaked: ${JSON.stringify(NETSTACK_INTERNALS)}.filter((k) => k in n),
        protocols: n.DEFAULT_NETWORK_PROTOCOLS.length,
      }));`);
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toEqual({ missing: [], leaked: [], protocols: 2 });
  });
});
