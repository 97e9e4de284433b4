/**
 * IP fidelity end to end: `icmpfwd serve` on its defaults in a private namespace, the kernel's
 * ping with IPv4 options and to ff02::1, and a datagram with a bad option written into the TUN
 * from the kernel side. A capture on icmpfwd0 shows what the netstack sent; its counters show
 * it was the netstack.
 */
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, expect, it } from "vitest";
import { parseAddress } from "../../src/netstack/address.js";
import { encodeIPv4 } from "../../src/netstack/header/ipv4.js";
import { Capture, describeNetns, inCI, Netns, parsePing, tsharkFields } from "../helpers/netns.js";
import { type ServeProcess, startServe } from "../helpers/serve.js";

/** Debian's scapy runs under the system interpreter, not whatever python3 is first on PATH. */
const SYSTEM_PYTHON = "/usr/bin/python3";
const hasScapy =
  spawnSync(SYSTEM_PYTHON, ["-c", "import scapy.all"], { stdio: "ignore" }).status === 0;
if (!hasScapy && inCI) {
  throw new Error("ip-fidelity e2e: python3-scapy (Debian, /usr/bin/python3) is missing in CI");
}

/** An ICMP Echo Request from the kernel side with a Record Route whose pointer is 0. */
function echoWithBadOption(): Uint8Array {
  const options = Uint8Array.of(7, 8, 0, 0, 0, 0, 0, 0);
  const icmp = Uint8Array.of(8, 0, 0, 0, 0x12, 0x34, 0, 1);
  const buf = new Uint8Array(20 + options.length + icmp.length);
  encodeIPv4(buf, 0, {
    tos: 0,
    totalLength: buf.length,
    id: 0x4321,
    flags: 2,
    fragmentOffset: 0,
    ttl: 64,
    protocol: 1,
    srcAddr: parseAddress("198.18.0.1")!,
    dstAddr: parseAddress("198.18.0.2")!,
    options,
  });
  buf.set(icmp, 28);
  let sum = 0;
  for (let i = 0; i < icmp.length; i += 2) sum += (icmp[i] << 8) | icmp[i + 1];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  const c = ~sum & 0xffff;
  buf[30] = c >> 8;
  buf[31] = c & 0xff;
  return buf;
}

describeNetns("IP fidelity through the TUN", () => {
  let ns: Netns;
  let serve: ServeProcess;

  beforeAll(async () => {
    ns = await Netns.create("ipfid");
    serve = await startServe(ns);
  });

  afterAll(async () => {
    await serve?.stop();
    await ns?.destroy();
  });

  const counter = (s: Record<string, number>, k: string) => s[k] ?? 0;

  it("lists 198.18.0.2 in the route ping -R records", async () => {
    const before = serve.stats();
    const r = await ns.exec("ping", ["-n", "-c", "1", "-W", "2", "-R", "198.18.0.2"]);
    expect(parsePing(r.stdout).received).toBe(1);
    const rr = /RR:([\s\S]*?)(?:\n\n|\n---|$)/.exec(r.stdout);
    expect(rr, r.stdout).not.toBeNull();
    expect(rr![1]).toContain("198.18.0.2");
    const after = await serve.waitStats(
      (s) =>
        counter(s, "ipv4.optionRecordRouteReceived") >
        counter(before, "ipv4.optionRecordRouteReceived"),
      "a Record Route option counted",
    );
    expect(counter(after, "icmp.v4.packetsSent.echoReply")).toBeGreaterThan(
      counter(before, "icmp.v4.packetsSent.echoReply"),
    );
  });

  /** The stamp lines iputils prints after "TS:" (one per stamp, relative after the first). */
  function stampLines(output: string): string[] {
    const ts = /TS:([\s\S]*?)(?:\n\n|\n---|$)/.exec(output);
    expect(ts, output).not.toBeNull();
    return ts![1]
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => /\d/.test(l));
  }

  it("shows the netstack's timestamp to ping -T tsonly", async () => {
    const before = serve.stats();
    const r = await ns.exec("ping", ["-n", "-c", "1", "-W", "2", "-T", "tsonly", "198.18.0.2"]);
    expect(parsePing(r.stdout).received).toBe(1);
    // Three stamps: the kernel's on the way out, the netstack's, the kernel's on the way in.
    expect(stampLines(r.stdout), r.stdout).toHaveLength(3);
    await serve.waitStats(
      (s) =>
        counter(s, "ipv4.optionTimestampReceived") ===
        counter(before, "ipv4.optionTimestampReceived") + 1,
      "a Timestamp option counted",
    );
    // With addresses, the middle stamp is the netstack's own.
    const a = await ns.exec("ping", ["-n", "-c", "1", "-W", "2", "-T", "tsandaddr", "198.18.0.2"]);
    const lines = stampLines(a.stdout);
    expect(lines, a.stdout).toHaveLength(3);
    expect(lines[1], a.stdout).toMatch(/^198\.18\.0\.2\s+\d+/);
  });

  it("answers ping to ff02::1 from the netstack's fe80::2 (the kernel answers too)", async () => {
    const cap = await Capture.start(ns, "icmpfwd0", { filter: "icmp6" });
    const r = await ns.exec("ping", ["-6", "-n", "-c", "2", "-W", "2", "ff02::1%icmpfwd0"]);
    const file = await cap.stop();
    expect(parsePing(r.stdout).received).toBeGreaterThanOrEqual(2);
    const replies = await tsharkFields(file, ["ipv6.src", "ipv6.dst"], "icmpv6.type == 129");
    const fromNetstack = replies.filter((x) => x[0] === "fe80::2");
    expect(fromNetstack.length, JSON.stringify(replies)).toBe(2);
  });

  it.skipIf(!hasScapy)(
    "answers a bad option written into the TUN with Parameter Problem at the pointer",
    async () => {
      const before = serve.stats();
      const cap = await Capture.start(ns, "icmpfwd0", { filter: "icmp" });
      const hex = Buffer.from(echoWithBadOption()).toString("hex");
      const script = [
        "from scapy.all import Raw, conf, sendp",
        "conf.verb = 0",
        `sendp(Raw(load=bytes.fromhex("${hex}")), iface="icmpfwd0")`,
      ].join("\n");
      const sent = await ns.exec(SYSTEM_PYTHON, ["-c", script], { timeoutMs: 30_000 });
      expect(sent.code, sent.stderr).toBe(0);
      const after = await serve.waitStats(
        (s) =>
          counter(s, "icmp.v4.packetsSent.paramProblem") >
          counter(before, "icmp.v4.packetsSent.paramProblem"),
        "a Parameter Problem sent",
      );
      const file = await cap.stop();
      expect(counter(after, "ipv4.malformedPacketsReceived")).toBe(
        counter(before, "ipv4.malformedPacketsReceived") + 1,
      );
      expect(counter(after, "icmp.v4.packetsSent.paramProblem")).toBe(
        counter(before, "icmp.v4.packetsSent.paramProblem") + 1,
      );
      const rows = await tsharkFields(
        file,
        ["ip.src", "ip.dst", "icmp.code", "icmp.pointer"],
        "icmp.type == 12",
      );
      // tshark lists the quoted datagram's fields too; the first value is the outer one.
      expect(rows.map((row) => row.map((f) => f.split(",")[0]))).toEqual([
        ["198.18.0.2", "198.18.0.1", "0", "22"],
      ]);
    },
  );
}, ["tcpdump", "tshark"]);
