/**
 * The TUN endpoint against the real kernel. The device lives only in this file's private network
 * namespace (the addon's `netns` option); this process stays in the root namespace. The kernel
 * side owns 198.18.0.1/24 on the device; 198.18.0.2 is the far end nobody answers for.
 */
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { TunEndpoint, TunError, type TunOptions } from "../../src/link/tun.js";
import type { NetworkDispatcher } from "../../src/netstack/link-endpoint.js";
import { describeNetns, exec, Netns, waitFor } from "../helpers/netns.js";
import { answerIPv4EchoInPlace, v4Echo } from "../helpers/packets.js";

const KERNEL = "198.18.0.1";
const FAR = "198.18.0.2";

/** The IPv4 + ICMP fields these tests look at; null for anything that is not IPv4 ICMP. */
interface Icmp4 {
  version: number;
  protocol: number;
  src: string;
  dst: string;
  type: number;
  code: number;
  ident: number;
  sequence: number;
  payload: Uint8Array;
}

function parseIcmp4(p: Uint8Array): Icmp4 | null {
  if (p.length < 20 || p[0] >> 4 !== 4) return null;
  const ihl = (p[0] & 0x0f) * 4;
  if (p[9] !== 1 || p.length < ihl + 8) return null;
  const dotted = (at: number): string => Array.from(p.subarray(at, at + 4)).join(".");
  const u16 = (at: number): number => (p[at] << 8) | p[at + 1];
  return {
    version: p[0] >> 4,
    protocol: p[9],
    src: dotted(12),
    dst: dotted(16),
    type: p[ihl],
    code: p[ihl + 1],
    ident: u16(ihl + 4),
    sequence: u16(ihl + 6),
    payload: p.subarray(ihl + 8),
  };
}

/** Keeps every packet delivered, with the batch count; IPv6 chatter included (pitfall 6). */
class Collector implements NetworkDispatcher {
  readonly packets: Uint8Array[] = [];
  batches = 0;

  deliverNetworkPackets(packets: readonly Uint8Array[]): void {
    this.batches++;
    for (const p of packets) this.packets.push(p);
  }

  icmp4(filter: (m: Icmp4) => boolean): Icmp4[] {
    const out: Icmp4[] = [];
    for (const p of this.packets) {
      const m = parseIcmp4(p);
      if (m !== null && filter(m)) out.push(m);
    }
    return out;
  }
}

const isRequestToFar = (m: Icmp4): boolean => m.type === 8 && m.dst === FAR;

interface LinkCounters {
  txPackets: number;
  txDropped: number;
}

describeNetns("TUN endpoint", () => {
  let ns: Netns;
  const opened: TunEndpoint[] = [];

  beforeAll(async () => {
    ns = await Netns.create("tun");
  });

  afterEach(() => {
    for (const tun of opened.splice(0)) tun.close();
  });

  afterAll(async () => {
    await ns?.destroy();
  });

  async function openTun(
    name: string,
    options: Partial<TunOptions> = {},
  ): Promise<{ tun: TunEndpoint; rx: Collector }> {
    const tun = TunEndpoint.open({ name, netns: ns.path, ...options });
    opened.push(tun);
    const rx = new Collector();
    tun.attach(rx);
    await ns.sh(`ip addr add ${KERNEL}/24 dev ${name}`);
    return { tun, rx };
  }

  async function linkCounters(name: string): Promise<LinkCounters> {
    const [link] = JSON.parse(await ns.sh(`ip -j -s link show dev ${name}`)) as [
      { stats64: { tx: { packets: number; dropped: number } } },
    ];
    return { txPackets: link.stats64.tx.packets, txDropped: link.stats64.tx.dropped };
  }

  async function deviceExists(name: string): Promise<boolean> {
    return (await ns.exec("ip", ["link", "show", "dev", name])).code === 0;
  }

  it("delivers the Echo Requests the kernel sends into it", async () => {
    const { tun, rx } = await openTun("icmpfwd-t1", { mtu: 1400 });
    expect(tun.mtu).toBe(1400);
    // The device exists in the test namespace only, up, with the MTU the addon set.
    expect(await ns.sh("ip -o link show dev icmpfwd-t1")).toMatch(/<[^>]*\bUP\b[^>]*> mtu 1400/);
    expect((await exec("ip", ["link", "show", "dev", "icmpfwd-t1"])).code).not.toBe(0);

    // Nobody answers: ping exits 1, which is fine; the requests are what we look at.
    await ns.exec("ping", ["-n", "-c", "3", "-i", "0.05", "-W", "2", FAR]);
    const requests = await waitFor(
      () => {
        const r = rx.icmp4(isRequestToFar);
        return r.length >= 3 ? r : null;
      },
      { what: "3 Echo Requests read from the TUN" },
    );

    expect(requests).toHaveLength(3);
    for (const m of requests) {
      expect(m.version).toBe(4);
      expect(m.protocol).toBe(1);
      expect(m.src).toBe(KERNEL);
      expect(m.dst).toBe(FAR);
      expect(m.type).toBe(8);
      expect(m.ident).toBe(requests[0].ident);
    }
    const first = requests[0].sequence;
    expect(requests.map((m) => m.sequence)).toEqual([first, first + 1, first + 2]);
    expect(tun.stats.packetsRead).toBeGreaterThanOrEqual(3);
    expect(tun.stats.readErrors).toBe(0);
  });

  it("writes packets that reach the kernel", async () => {
    const { tun, rx } = await openTun("icmpfwd-t2");
    const inEchosBefore = await ns.nstat("IcmpInEchos");
    const outRepsBefore = await ns.nstat("IcmpOutEchoReps");
    const payload = new TextEncoder().encode("icmpfwd tun write test, 32 bytes");

    const request = v4Echo({ src: FAR, dst: KERNEL, ident: 0x5151, sequence: 7, payload });
    expect(tun.writePacket(request)).toBeNull();

    const [reply] = await waitFor(
      () => {
        const r = rx.icmp4((m) => m.type === 0 && m.dst === FAR);
        return r.length > 0 ? r : null;
      },
      { what: "the kernel's Echo Reply" },
    );
    expect(reply.src).toBe(KERNEL);
    expect(reply.code).toBe(0);
    expect(reply.ident).toBe(0x5151);
    expect(reply.sequence).toBe(7);
    expect(Array.from(reply.payload)).toEqual(Array.from(payload));
    expect(tun.stats.packetsWritten).toBe(1);
    expect(await ns.nstat("IcmpInEchos")).toBe(inEchosBefore + 1);
    expect(await ns.nstat("IcmpOutEchoReps")).toBe(outRepsBefore + 1);
  });

  it("reads a 10,000-packet burst in batches with none lost", async () => {
    const name = "icmpfwd-t3";
    const { tun, rx } = await openTun(name);
    // A preloaded ping hands all 10,000 requests to the device within ~50 ms; the default
    // 500-packet ring would drop most of them in the kernel before any reader could run, so the
    // ring holds the whole burst and the test checks that the reader takes every packet off it.
    await ns.sh(`ip link set dev ${name} txqueuelen 10000`);
    const linkBefore = await linkCounters(name);
    const readBefore = tun.stats.packetsRead;
    const batchesBefore = tun.stats.batches;
    const outEchosBefore = await ns.nstat("IcmpOutEchos");

    const ping = await ns.exec(
      "timeout",
      ["-s", "INT", "30", "ping", "-n", "-q", "-f", "-l", "10000", "-c", "10000", "-W", "2", FAR],
      { timeoutMs: 45_000 },
    );
    expect(ping.stdout).toMatch(/10000 packets transmitted/);
    const sent = (await ns.nstat("IcmpOutEchos")) - outEchosBefore;
    expect(sent).toBe(10_000);

    // Everything the device queued was read: IPv6 chatter included, so compare totals.
    await waitFor(
      async () =>
        tun.stats.packetsRead - readBefore ===
        (await linkCounters(name)).txPackets - linkBefore.txPackets,
      { what: "the reader to catch up with the device's TX counter" },
    );
    const linkAfter = await linkCounters(name);
    expect(linkAfter.txDropped - linkBefore.txDropped).toBe(0);

    // And the Echo Requests among them are exactly the ones the kernel sent, filtered by
    // protocol so router solicitations and MLD reports do not count.
    expect(rx.icmp4(isRequestToFar)).toHaveLength(sent);
    const packets = tun.stats.packetsRead - readBefore;
    const batches = tun.stats.batches - batchesBefore;
    expect(batches).toBeGreaterThan(0);
    expect(batches).toBeLessThan(packets);
    expect(tun.stats.readErrors).toBe(0);
  });

  it("holds the writes made while a read batch is handed up until the batch is done, then writes them all", async () => {
    const name = "icmpfwd-t5";
    const { tun } = await openTun(name);
    // The dispatcher answers every Echo Request to FAR in place, as the netstack's built-in path
    // does, and notes how many packets the endpoint wrote while the batch was being handed up.
    const writtenInsideBatch: number[] = [];
    let answered = 0;
    tun.attach({
      deliverNetworkPackets(packets: readonly Uint8Array[]): void {
        const before = tun.stats.packetsWritten;
        for (const p of packets) {
          const m = parseIcmp4(p);
          if (m === null || !isRequestToFar(m)) continue;
          expect(answerIPv4EchoInPlace(p)).toBe(true);
          expect(tun.writePacket(p)).toBeNull();
          answered++;
        }
        writtenInsideBatch.push(tun.stats.packetsWritten - before);
      },
    });
    const writtenBefore = tun.stats.packetsWritten;
    const repliesBefore = await ns.nstat("IcmpInEchoReps");
    const r = await ns.exec(
      "timeout",
      ["-s", "INT", "30", "ping", "-n", "-q", "-f", "-l", "64", "-c", "2000", "-W", "2", FAR],
      { timeoutMs: 45_000 },
    );
    expect(r.stdout).toMatch(/2000 packets transmitted/);
    expect(answered).toBe(2000);
    // Counted where they arrive (ping's own summary misses replies after its short linger).
    await waitFor(async () => (await ns.nstat("IcmpInEchoReps")) - repliesBefore === 2000, {
      what: "the kernel to receive 2000 Echo Replies",
    });
    expect(tun.stats.packetsWritten - writtenBefore).toBe(2000);
    expect(tun.stats.writeErrors).toBe(0);
    expect(writtenInsideBatch.length).toBeGreaterThan(0);
    expect(writtenInsideBatch.filter((n) => n !== 0)).toEqual([]);
  });

  it("close releases the device", async () => {
    const name = "icmpfwd-t4";
    const { tun } = await openTun(name);
    expect(await deviceExists(name)).toBe(true);

    tun.close();
    expect(await deviceExists(name)).toBe(false);
    tun.close(); // idempotent
    expect(tun.writePacket(v4Echo({ src: FAR, dst: KERNEL }))?.kind).toBe("closed");

    // A non-persistent device's name is free again at once.
    const again = TunEndpoint.open({ name, netns: ns.path });
    opened.push(again);
    expect(await deviceExists(name)).toBe(true);
    again.close();
    expect(await deviceExists(name)).toBe(false);
  });

  it("attaches to a persistent device an administrator created", async () => {
    const name = "icmpfwd-p5";
    await ns.sh(`ip tuntap add dev ${name} mode tun`);
    const { tun, rx } = await openTun(name, { attach: true });
    // Without an mtu option, attaching keeps the administrator's MTU.
    expect(tun.mtu).toBe(1500);
    await ns.exec("ping", ["-n", "-c", "1", "-W", "2", FAR]);
    await waitFor(() => rx.icmp4(isRequestToFar).length === 1, {
      what: "the Echo Request through the attached device",
    });

    tun.close();
    expect(await deviceExists(name)).toBe(true);
    // Creating a device under a name that exists is refused rather than silently attaching.
    const conflict = (() => {
      try {
        opened.push(TunEndpoint.open({ name, netns: ns.path }));
        return null;
      } catch (e) {
        return e;
      }
    })();
    expect(conflict).toBeInstanceOf(TunError);
    expect((conflict as TunError).kind).toBe("nameInUse");
    // Cleanup: the namespace's deletion takes the persistent device with it.
  });

  it("attach to a missing device fails with kind notFound", () => {
    let caught: unknown;
    try {
      opened.push(TunEndpoint.open({ name: "icmpfwd-none", attach: true, netns: ns.path }));
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(TunError);
    expect((caught as TunError).kind).toBe("notFound");
    expect((caught as TunError).message).toMatch(/ip tuntap add dev icmpfwd-none mode tun/);
  });

  it("rejects invalid options before touching the kernel", () => {
    const kindOf = (o: TunOptions): string => {
      try {
        opened.push(TunEndpoint.open(o));
        return "opened";
      } catch (e) {
        return e instanceof TunError ? e.kind : String(e);
      }
    };
    expect(kindOf({ name: "a-name-longer-than-15", netns: ns.path })).toBe("invalidOption");
    expect(kindOf({ name: "bad/name", netns: ns.path })).toBe("invalidOption");
    expect(kindOf({ name: "icmpfwd-t7", mtu: 40, netns: ns.path })).toBe("invalidOption");
    expect(kindOf({ name: "icmpfwd-t7", batchSize: 0, netns: ns.path })).toBe("invalidOption");
    expect(kindOf({ name: "icmpfwd-t7", netns: `${ns.path}-missing` })).toBe("notFound");
  });
});
