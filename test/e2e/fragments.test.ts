/**
 * Fragments end to end: `icmpfwd serve` on its defaults (MTU 1500) in a private namespace. The
 * kernel fragments `ping -s 8000`; the netstack reassembles the request and fragments the reply
 * (the capture on icmpfwd0 shows the reply's fragments, its counters prove it was the netstack).
 * A bounded flood of incomplete fragments from scapy leaves reassembly memory under the limit.
 */
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Capture, describeNetns, inCI, Netns, parsePing, tsharkFields } from "../helpers/netns.js";
import { type ServeProcess, startServe } from "../helpers/serve.js";

const SYSTEM_PYTHON = "/usr/bin/python3";
const hasScapy =
  spawnSync(SYSTEM_PYTHON, ["-c", "import scapy.all"], { stdio: "ignore" }).status === 0;
if (!hasScapy && inCI) {
  throw new Error("fragments e2e: python3-scapy (Debian, /usr/bin/python3) is missing in CI");
}

/** The default reassembly high threshold (gVisor's HighFragThreshold). */
const HIGH_THRESHOLD = 4 << 20;

describeNetns("fragments through the TUN", () => {
  let ns: Netns;
  let serve: ServeProcess;

  beforeAll(async () => {
    ns = await Netns.create("frag");
    serve = await startServe(ns);
  });

  afterAll(async () => {
    await serve?.stop();
    await ns?.destroy();
  });

  const c = (s: Record<string, number>, k: string) => s[k] ?? 0;
  const delta = (a: Record<string, number>, b: Record<string, number>, k: string) =>
    c(a, k) - c(b, k);

  it("answers ping -M dont -s 8000 with a reply in fragments", async () => {
    const before = serve.stats();
    const cap = await Capture.start(ns, "icmpfwd0", { filter: "ip" });
    const r = await ns.exec("ping", [
      "-n",
      "-c",
      "3",
      "-i",
      "0.2",
      "-W",
      "2",
      "-M",
      "dont",
      "-s",
      "8000",
      "198.18.0.2",
    ]);
    expect(parsePing(r.stdout).received, r.stdout + r.stderr).toBe(3);
    const after = await serve.waitStats(
      (s) => delta(s, before, "icmp.v4.packetsSent.echoReply") === 3,
      "three Echo Replies",
    );
    const file = await cap.stop();
    // 8008 bytes of ICMP in 1480-byte pieces: 6 fragments each way per ping.
    expect(delta(after, before, "ipv4.fragmentsReceived")).toBe(18);
    expect(delta(after, before, "ipv4.fragmentsQueued")).toBe(15);
    expect(delta(after, before, "ipv4.packetsReassembled")).toBe(3);
    expect(delta(after, before, "ipv4.packetsDelivered")).toBe(3);
    expect(delta(after, before, "ipv4.packetsFragmented")).toBe(3);
    expect(delta(after, before, "ipv4.fragmentsSent")).toBe(18);
    expect(delta(after, before, "ipv4.packetsSent")).toBe(18);
    expect(c(after, "ipv4.reassemblyBytes")).toBe(0);
    const rows = await tsharkFields(
      file,
      ["ip.id", "ip.flags.mf", "ip.frag_offset"],
      "ip.src == 198.18.0.2",
    );
    // The netstack's counters above are exact; a capture can lose packets when tcpdump is
    // starved of CPU, so it must show at least one reply whole, and nothing but such fragments.
    // tshark shows the offset in 8-octet units.
    const v4 = byId(
      rows.map((row) => [row[0], Number(row[2]) * 8, row[1] === "1" || row[1] === "True"] as const),
    );
    const whole = [...v4.values()].filter((f) => f.length === 6);
    expect(whole.length, JSON.stringify(rows)).toBeGreaterThanOrEqual(1);
    expect(whole[0].map((f) => f[0])).toEqual([0, 1480, 2960, 4440, 5920, 7400]);
    expect(whole[0].map((f) => f[1])).toEqual([true, true, true, true, true, false]);
    expect(v4.size).toBeLessThanOrEqual(3);
  });

  it("answers ping -6 -s 8000 with a reply in fragments (Fragment header)", async () => {
    const before = serve.stats();
    const cap = await Capture.start(ns, "icmpfwd0", { filter: "ip6" });
    const r = await ns.exec("ping", [
      "-6",
      "-n",
      "-c",
      "3",
      "-i",
      "0.2",
      "-W",
      "2",
      "-s",
      "8000",
      "fd00:1::2",
    ]);
    expect(parsePing(r.stdout).received, r.stdout + r.stderr).toBe(3);
    const after = await serve.waitStats(
      (s) => delta(s, before, "icmp.v6.packetsSent.echoReply") === 3,
      "three Echo Replies",
    );
    const file = await cap.stop();
    expect(delta(after, before, "ipv6.packetsReassembled")).toBe(3);
    expect(delta(after, before, "ipv6.packetsFragmented")).toBe(3);
    // (1500 - 48) & ~7 = 1448 bytes per fragment: 6 fragments for 8008 bytes.
    expect(delta(after, before, "ipv6.fragmentsSent")).toBe(18);
    expect(c(after, "ipv6.reassemblyBytes")).toBe(0);
    const rows = await tsharkFields(
      file,
      ["ipv6.fraghdr.ident", "ipv6.fraghdr.offset"],
      "ipv6.src == fd00:1::2 && ipv6.fraghdr",
    );
    // Exact counters above; the capture must show at least one reply whole (tcpdump may drop).
    const v6 = byId(rows.map((row) => [row[0], Number(row[1]) * 8, false] as const));
    const whole = [...v6.values()].filter((f) => f.length === 6);
    expect(whole.length, JSON.stringify(rows)).toBeGreaterThanOrEqual(1);
    expect(whole[0].map((f) => f[0])).toEqual([0, 1448, 2896, 4344, 5792, 7240]);
    expect(v6.size).toBeLessThanOrEqual(3);
  });

  it("ping -M do -s 8000: the kernel refuses to send it, the netstack sees nothing", async () => {
    const before = serve.stats();
    const r = await ns.exec("ping", [
      "-n",
      "-c",
      "1",
      "-W",
      "1",
      "-M",
      "do",
      "-s",
      "8000",
      "198.18.0.2",
    ]);
    expect(parsePing(r.stdout).received).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/message too long/i);
    // Nothing reached the TUN: no fragment, no datagram, no reply.
    await new Promise((res) => setTimeout(res, 200));
    const after = serve.stats();
    expect(delta(after, before, "ipv4.packetsReceived")).toBe(0);
    expect(delta(after, before, "ipv4.outgoingPacketTooBig")).toBe(0);
  });

  it.skipIf(!hasScapy)(
    "keeps reassembly memory under the limit during a flood of incomplete fragments",
    async () => {
      const before = serve.stats();
      const droppedBefore = await tunTxDropped(ns);
      const count = 4000;
      // Last fragments (offset 8, no MF) with distinct IDs: none can ever complete. Sent in
      // slices smaller than the TUN's queue (txqueuelen 500) so a busy reader loses few; the
      // kernel counts what it did drop, and the accounting below is exact either way.
      const script = [
        "import time",
        "from scapy.all import IP, Raw, conf, sendp",
        "conf.verb = 0",
        `pkts = [Raw(load=bytes(IP(src="198.18.0.1", dst="198.18.0.2", id=i, frag=1, flags=0, proto=1)/Raw(load=b"x" * 1400))) for i in range(${count})]`,
        "for i in range(0, len(pkts), 250):",
        '    sendp(pkts[i:i + 250], iface="icmpfwd0")',
        "    time.sleep(0.02)",
      ].join("\n");
      const sent = await ns.exec(SYSTEM_PYTHON, ["-c", script], { timeoutMs: 60_000 });
      expect(sent.code, sent.stderr).toBe(0);
      const dropped = (await tunTxDropped(ns)) - droppedBefore;
      let peak = 0;
      const after = await serve.waitStats(
        (s) => {
          peak = Math.max(peak, c(s, "ipv4.reassemblyBytes"));
          return delta(s, before, "ipv4.fragmentsReceived") + dropped >= count;
        },
        `the flood received (${dropped} dropped by the TUN queue)`,
        20_000,
      );
      const received = delta(after, before, "ipv4.fragmentsReceived");
      expect(received).toBe(count - dropped);
      expect(peak).toBeLessThanOrEqual(HIGH_THRESHOLD);
      expect(c(after, "ipv4.reassemblyBytes")).toBeLessThanOrEqual(HIGH_THRESHOLD);
      // Each held fragment costs 1420 + 128 bytes: more than 4 MiB arrived, so the oldest went.
      expect(received * 1548, `only ${received} fragments arrived`).toBeGreaterThan(HIGH_THRESHOLD);
      expect(delta(after, before, "ipv4.reassemblyEvictions")).toBeGreaterThan(0);
      expect(delta(after, before, "ipv4.fragmentsQueued")).toBe(received);
      const r = await ns.exec("ping", ["-n", "-c", "1", "-W", "2", "198.18.0.2"]);
      expect(parsePing(r.stdout).received).toBe(1);
    },
    90_000,
  );
}, ["tcpdump", "tshark"]);

/** Packets the kernel dropped because icmpfwd0's queue to its reader was full. */
async function tunTxDropped(ns: Netns): Promise<number> {
  const r = await ns.exec("ip", ["-j", "-s", "link", "show", "icmpfwd0"]);
  const [link] = JSON.parse(r.stdout) as [{ stats64: { tx: { dropped: number } } }];
  return link.stats64.tx.dropped;
}

/** Captured fragments grouped by datagram id: [offset in bytes, more-fragments] in capture order. */
function byId(
  rows: ReadonlyArray<readonly [string, number, boolean]>,
): Map<string, [number, boolean][]> {
  const out = new Map<string, [number, boolean][]>();
  for (const [id, offset, more] of rows) {
    const list = out.get(id) ?? [];
    list.push([offset, more]);
    out.set(id, list);
  }
  return out;
}
