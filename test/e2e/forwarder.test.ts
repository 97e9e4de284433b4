/**
 * The Forwarder API end to end: this test process owns the TUN (created inside a private
 * namespace through the addon's netns option) and the netstack; the kernel's ping runs in the
 * namespace. Every "no reply" phase has a positive control in the same run.
 */
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { resolveConfig } from "../../src/config.js";
import { TunEndpoint } from "../../src/link/tun.js";
import { formatAddress } from "../../src/netstack/address.js";
import { ICMPV4_PROTOCOL_NUMBER, ICMPV6_PROTOCOL_NUMBER } from "../../src/netstack/buffer.js";
import { isTcpipError } from "../../src/netstack/errors.js";
import { Forwarder, type ForwarderHandler } from "../../src/netstack/icmp/forwarder.js";
import type { EchoReplyEvent } from "../../src/netstack/icmp/ping.js";
import { copyEchoRequest, sendSyntheticEchoReply } from "../../src/netstack/icmp/synthetic.js";
import type { Stack } from "../../src/netstack/stack.js";
import { buildStack } from "../../src/serve.js";
import { describeNetns, Netns, parsePing, waitFor } from "../helpers/netns.js";
import { addr } from "../helpers/packets.js";

describeNetns("Forwarder end to end with the kernel's ping", () => {
  let ns: Netns;
  let tun: TunEndpoint;
  let stack: Stack;
  let handler: ForwarderHandler | null = null;
  let seen = 0;

  beforeAll(async () => {
    ns = await Netns.create("fwd");
    tun = TunEndpoint.open({ name: "icmpfwd0", mtu: 1500, netns: ns.path });
    await ns.sh(
      [
        "ip addr add 198.18.0.1/24 dev icmpfwd0",
        "ip addr add fd00:1::1/64 dev icmpfwd0 nodad",
        "ip route add 198.18.128.0/17 dev icmpfwd0",
        "ip route add fd00:2::/64 dev icmpfwd0",
      ].join(" && "),
    );
    stack = buildStack(
      resolveConfig({ promiscuous: true, routes: ["198.18.128.0/17", "fd00:2::/64"] }),
      tun,
    );
    // One forwarder for both families; each test swaps the policy behind it.
    const f = new Forwarder((req) => {
      seen++;
      return handler === null ? false : handler(req);
    });
    stack.setTransportProtocolHandler(ICMPV4_PROTOCOL_NUMBER, f.handlePacket);
    stack.setTransportProtocolHandler(ICMPV6_PROTOCOL_NUMBER, f.handlePacket);
  });

  afterEach(() => {
    handler = null;
  });

  afterAll(async () => {
    stack?.close();
    tun?.close();
    await ns?.destroy();
  });

  const sent4 = () => stack.stats.icmp.v4.packetsSent.echoReply;
  const sent6 = () => stack.stats.icmp.v6.packetsSent.echoReply;

  async function ping(args: string[]) {
    const r = await ns.ping(["-n", "-W", "2", ...args]);
    return { ...parsePing(r.stdout), received: r.received, out: r.stdout };
  }

  it("a consuming handler sees every request and none is answered; reply() answers all", async () => {
    handler = () => true;
    seen = 0;
    const before = sent4();
    const consumed = await ping(["-c", "10", "-i", "0.02", "198.18.0.2"]);
    expect(consumed.transmitted).toBe(10);
    expect(consumed.received).toBe(0);
    expect(seen).toBe(10);
    expect(sent4()).toBe(before);

    // Positive control, same run: the handler delegates to the built-in path.
    handler = (req) => req.reply();
    seen = 0;
    const replied = await ping(["-c", "10", "-i", "0.02", "198.18.0.2"]);
    expect(replied.received).toBe(10);
    expect(seen).toBe(10);
    expect(sent4()).toBe(before + 10);
    expect(await ns.nstat("IcmpInEchos")).toBe(0);
  });

  it("IPv4 temporary addresses stay unanswered by default and are answered from themselves after reply()", async () => {
    const unanswered = await ping(["-c", "3", "-i", "0.02", "198.18.200.7"]);
    expect(unanswered.received).toBe(0);
    // Positive control: the NIC's own address is answered in the same configuration.
    expect((await ping(["-c", "3", "-i", "0.02", "198.18.0.2"])).received).toBe(3);

    handler = (req) => (req.packetInfo().localAddressTemporary ? req.reply() : false);
    const answered = await ping(["-c", "3", "-i", "0.02", "198.18.200.7"]);
    expect(answered.received).toBe(3);
    expect(answered.out).toContain("from 198.18.200.7");
  });

  it("IPv6 temporary addresses are answered by default (no suppression rule)", async () => {
    const before = sent6();
    const r = await ping(["-6", "-c", "3", "-i", "0.02", "fd00:2::7"]);
    expect(r.received).toBe(3);
    expect(r.out).toContain("from fd00:2::7");
    expect(sent6()).toBe(before + 3);
    expect(await ns.nstat("Icmp6InEchos")).toBe(0);
  });

  it("a proxy's synthetic reply 300 ms later reports the delay, from the temporary address, once", async () => {
    handler = (req) => {
      const copy = copyEchoRequest(req);
      if (isTcpipError(copy)) return false;
      setTimeout(() => {
        const err = sendSyntheticEchoReply(stack, copy);
        if (err !== null) throw new Error(err.message);
      }, 300);
      return true;
    };
    const r = await ping(["-c", "3", "-i", "0.4", "-W", "2", "198.18.200.7"]);
    expect(r.received).toBe(3);
    expect(r.out).not.toContain("DUP");
    const times = [
      ...r.out.matchAll(/from 198\.18\.200\.7: icmp_seq=\d+ ttl=64 time=([\d.]+) ms/g),
    ].map((m) => Number(m[1]));
    expect(times).toHaveLength(3);
    for (const t of times) expect(t).toBeGreaterThanOrEqual(300);
  });

  it("a netstack ping endpoint pings the kernel side and gets its replies", async () => {
    const ep = stack.openPingEndpoint({ family: "ipv4" });
    if (isTcpipError(ep)) throw new Error(ep.message);
    const got: EchoReplyEvent[] = [];
    ep.onReply = (e) => got.push(e);
    const kernelBefore = await ns.nstat("IcmpInEchos");
    for (let seq = 1; seq <= 3; seq++)
      expect(ep.sendEcho(addr("198.18.0.1"), seq, new Uint8Array(32).fill(7))).toBeNull();
    await waitFor(() => got.length >= 3, { what: "3 echo replies from the kernel" });
    ep.close();
    expect(got.map((e) => e.sequence)).toEqual([1, 2, 3]);
    expect(
      got.every((e) => formatAddress(e.remoteAddress) === "198.18.0.1" && e.ident === ep.ident),
    ).toBe(true);
    expect(got[0].payload).toEqual(new Uint8Array(32).fill(7));
    expect((await ns.nstat("IcmpInEchos")) - kernelBefore).toBe(3);
  });
});
