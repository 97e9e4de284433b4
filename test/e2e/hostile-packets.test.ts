/**
 * A corpus of hostile packets written into the real TUN from the kernel side (scapy `sendp` on
 * the TUN interface: AF_PACKET, so the kernel does not rewrite lengths or checksums), one class
 * at a time: `icmpfwd serve` stays up, each class lands in exactly the counter it should (count
 * sent = count dropped for that reason), and a normal ping is answered right after.
 */
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, expect, it } from "vitest";
import { IPv4Header } from "../../src/netstack/header/ipv4.js";
import { evenPieces, fragmentV4 } from "../helpers/fragments.js";
import { optionsHeader, v6Chain } from "../helpers/ip-packets.js";
import { describeNetns, inCI, Netns } from "../helpers/netns.js";
import { payloadOf, v4Echo, v6Echo } from "../helpers/packets.js";
import { type ServeProcess, startServe } from "../helpers/serve.js";

const SYSTEM_PYTHON = "/usr/bin/python3";
const hasScapy =
  spawnSync(SYSTEM_PYTHON, ["-c", "import scapy.all"], { stdio: "ignore" }).status === 0;
if (!hasScapy && inCI)
  throw new Error("hostile-packets e2e: python3-scapy (Debian, /usr/bin/python3) is missing in CI");

const PER_CLASS = 20;

/** Fixes the IPv4 header checksum after a deliberate corruption elsewhere in the header. */
function refreshChecksum(p: Uint8Array): Uint8Array {
  const h = new IPv4Header(p);
  h.checksum = 0;
  h.checksum = h.calculateChecksum();
  return p;
}

interface HostileClass {
  name: string;
  packets: () => Uint8Array[];
  /** Counter deltas the class must cause, exactly. */
  expect: Record<string, number>;
}

const N = PER_CLASS;
const classes: HostileClass[] = [
  {
    name: "IHL below 5",
    packets: () =>
      Array.from({ length: N }, (_, i) =>
        refreshChecksumLater(v4Echo({ sequence: i }), (p) => (p[0] = 0x44)),
      ),
    expect: { "ipv4.malformedPacketsReceived": N },
  },
  {
    name: "total length beyond the buffer",
    packets: () =>
      Array.from({ length: N }, (_, i) =>
        refreshChecksumLater(
          v4Echo({ sequence: i }),
          (p) => (new IPv4Header(p).totalLength = p.length + 40),
        ),
      ),
    expect: { "ipv4.malformedPacketsReceived": N },
  },
  {
    name: "total length below the header length",
    packets: () =>
      Array.from({ length: N }, (_, i) =>
        refreshChecksumLater(v4Echo({ sequence: i }), (p) => (new IPv4Header(p).totalLength = 12)),
      ),
    expect: { "ipv4.malformedPacketsReceived": N },
  },
  {
    name: "an option overrunning the header",
    // Record Route claiming 39 bytes in an 8-byte option area.
    packets: () =>
      Array.from({ length: N }, (_, i) =>
        v4Echo({ sequence: i, options: Uint8Array.of(7, 39, 4, 0, 0, 0, 0, 0) }),
      ),
    expect: { "ipv4.malformedPacketsReceived": N, "icmp.v4.packetsSent.paramProblem": N },
  },
  {
    name: "a bad ICMP checksum",
    packets: () =>
      Array.from({ length: N }, (_, i) => {
        const p = v4Echo({ sequence: i });
        p[22] ^= 0x5a;
        return p;
      }),
    expect: { "icmp.v4.packetsReceived.invalid": N, "ipv4.packetsDelivered": N },
  },
  {
    name: "teardrop: overlapping fragments",
    packets: () =>
      Array.from({ length: N }, (_, i) =>
        fragmentV4(v4Echo({ payload: payloadOf(1000), flags: 0, id: 0x4000 + i }), [
          { offset: 0, length: 512 },
          { offset: 256, length: 752 },
        ]),
      ).flat(),
    expect: {
      "ipv4.reassemblyOverlaps": N,
      "ipv4.fragmentsQueued": N,
      "ipv4.malformedPacketsReceived": N,
    },
  },
  {
    name: "tiny fragments (8 bytes each) that reassemble",
    packets: () =>
      fragmentV4(v4Echo({ payload: payloadOf(56), flags: 0, id: 0x5000 }), evenPieces(64, 8)),
    expect: {
      "ipv4.fragmentsQueued": 7,
      "ipv4.packetsReassembled": 1,
      "icmp.v4.packetsSent.echoReply": 1,
    },
  },
  {
    name: "IPv6 extension chain longer than the packet",
    packets: () =>
      Array.from({ length: N }, () => {
        const p = v6Chain({ headers: [optionsHeader(0, [1, 4, 0, 0, 0, 0])] });
        p[41] = 30; // Hdr Ext Len far beyond the packet
        return p;
      }),
    expect: { "ipv6.malformedPacketsReceived": N },
  },
  {
    name: "a jumbogram option (RFC 2675) in a normal packet",
    packets: () =>
      Array.from({ length: N }, () =>
        v6Chain({ headers: [optionsHeader(0, [0xc2, 4, 0, 1, 0, 0])] }),
      ),
    expect: { "ipv6.unsupportedHeadersReceived": N, "icmp.v6.packetsSent.paramProblem": N },
  },
  {
    name: "1-byte packets",
    packets: () => [
      ...Array.from({ length: N }, () => Uint8Array.of(0x45)),
      ...Array.from({ length: N }, () => Uint8Array.of(0x07)),
    ],
    expect: { "ipv4.malformedPacketsReceived": N, "nic.unknownL3ProtocolRcvdPackets": N },
  },
  {
    name: "an IPv6 Echo Request with a bad checksum",
    packets: () =>
      Array.from({ length: N }, (_, i) => {
        const p = v6Echo({ sequence: i });
        p[42] ^= 0x5a;
        return p;
      }),
    expect: { "icmp.v6.packetsReceived.invalid": N },
  },
];

function refreshChecksumLater(p: Uint8Array, mutate: (p: Uint8Array) => unknown): Uint8Array {
  mutate(p);
  return refreshChecksum(p);
}

describeNetns("hostile packets through the real TUN", () => {
  let ns: Netns;
  let serve: ServeProcess;

  beforeAll(async () => {
    ns = await Netns.create("hostile");
    serve = await startServe(ns);
  });

  afterAll(async () => {
    await serve?.stop();
    await ns?.destroy();
  });

  async function send(packets: Uint8Array[]): Promise<void> {
    const hex = packets.map((p) => `"${Buffer.from(p).toString("hex")}"`).join(",");
    const script = [
      "from scapy.all import Raw, conf, sendp",
      "conf.verb = 0",
      `sendp([Raw(load=bytes.fromhex(h)) for h in [${hex}]], iface="icmpfwd0")`,
    ].join("\n");
    const r = await ns.exec(SYSTEM_PYTHON, ["-c", script], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
  }

  const get = (s: Record<string, number>, k: string): number => s[k] ?? 0;

  it.skipIf(!hasScapy).each(classes.map((c) => [c.name, c] as const))(
    "counts every packet of class %s under its reason, and nothing else breaks",
    async (_name, c) => {
      const packets = c.packets();
      const before = serve.stats();
      await send(packets);
      await serve.waitStats(
        (s) => get(s, "nic.packetsReceived") >= get(before, "nic.packetsReceived") + packets.length,
        `${packets.length} packets of ${c.name}`,
      );
      // Let any reply or error the class causes be written too.
      await new Promise((r) => setTimeout(r, 150));
      const settled = serve.stats();
      // The kernel's own IPv6 chatter (router solicitations, MLD reports to unjoined groups)
      // may arrive meanwhile; all of it is counted as an invalid destination.
      const chatter =
        get(settled, "ipv6.invalidDestinationAddressesReceived") -
        get(before, "ipv6.invalidDestinationAddressesReceived");
      expect(
        get(settled, "nic.packetsReceived") - get(before, "nic.packetsReceived") - chatter,
      ).toBe(packets.length);
      for (const [k, v] of Object.entries(c.expect)) {
        expect(get(settled, k) - get(before, k), `${c.name}: ${k}`).toBe(v);
      }
      expect(serve.proc.child.exitCode).toBeNull();
    },
  );

  it("answers a normal ping right after the corpus (positive control)", async () => {
    const r = await ns.ping(["-n", "-c", "3", "-i", "0.05", "-W", "2", "198.18.0.2"]);
    expect(r.received).toBe(3);
    const r6 = await ns.ping(["-6", "-n", "-c", "3", "-i", "0.05", "-W", "2", "fd00:1::2"]);
    expect(r6.received).toBe(3);
    expect(serve.proc.child.exitCode).toBeNull();
  });
}, ["tcpdump"]);
