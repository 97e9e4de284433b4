/**
 * DESIGN.md §3 on temporary addresses (a promiscuous NIC accepting any destination): IPv4 gets
 * no automatic reply, only an explicit reply(), which answers from the original destination
 * and finds a route without that address being on the NIC. IPv6 has no suppression rule.
 */
import { describe, expect, it } from "vitest";
import type { NetworkPacketInfo } from "../../src/netstack/index.js";
import { addr } from "../helpers/packets.js";
import { NIC_ID, testStack } from "../helpers/stack.js";
import { IPV4, IPV6, install, oneReply, promiscuous, wire } from "./families.js";

describe("IPv4 temporary addresses", () => {
  it("an Echo Request to a temporary address gets no reply by default", () => {
    const t = testStack();
    promiscuous(t);
    t.link.inject(IPV4.echo({ dst: "198.18.200.7" }));
    expect(wire(t, IPV4)).toEqual([]);
    expect(t.stack.stats.icmp.v4.packetsReceived.echoRequest).toBe(1);
    expect(t.stack.stats.icmp.v4.packetsSent.echoReply).toBe(0);
    expect(t.stack.stats.ipv4.invalidDestinationAddressesReceived).toBe(0);
  });

  it("explicit reply() answers with source = the original destination 198.18.200.7", () => {
    const t = testStack();
    promiscuous(t);
    const info: NetworkPacketInfo[] = [];
    install(t, (req) => {
      info.push({ ...req.packetInfo() });
      return req.packetInfo().localAddressTemporary ? req.reply() : false;
    });
    t.link.inject(IPV4.echo({ dst: "198.18.200.7", ident: 0x7777, sequence: 2 }));
    expect(info).toEqual([{ localAddressTemporary: true, localAddressBroadcast: false }]);
    const r = oneReply(t, IPV4);
    expect(r.src).toBe("198.18.200.7");
    expect(r.dst).toBe("198.18.0.1");
    expect(r.ident).toBe(0x7777);
    expect(r.sequence).toBe(2);
    expect(t.stack.stats.icmp.v4.packetsSent.echoReply).toBe(1);
  });

  it("reply() for a temporary address finds a route without the address on the NIC and without spoofing", () => {
    const t = testStack();
    promiscuous(t, false);
    install(t, (req) => req.reply());
    t.link.inject(IPV4.echo({ dst: "198.18.200.7" }));
    expect(oneReply(t, IPV4).src).toBe("198.18.200.7");
    // The reply did not register the temporary address on the NIC.
    expect(t.stack.nic(NIC_ID)?.findAddress(addr("198.18.200.7"))).toBeNull();
  });

  it("packetInfo().localAddressTemporary is false for an address the NIC owns", () => {
    const t = testStack();
    promiscuous(t);
    const info: NetworkPacketInfo[] = [];
    install(t, (req) => {
      info.push({ ...req.packetInfo() });
      return true;
    });
    t.link.inject(IPV4.echo());
    expect(info).toEqual([{ localAddressTemporary: false, localAddressBroadcast: false }]);
  });

  it("without promiscuous mode the same request is an invalid destination, never handled", () => {
    const t = testStack();
    const fwd = install(t, (req) => req.reply());
    t.link.inject(IPV4.echo({ dst: "198.18.200.7" }));
    expect(fwd.stats.handled).toBe(0);
    expect(wire(t, IPV4)).toEqual([]);
    expect(t.stack.stats.ipv4.invalidDestinationAddressesReceived).toBe(1);
  });
});

describe("IPv6 temporary addresses", () => {
  it("an Echo Request to a temporary address is NOT suppressed: answered by default from fd00:2::7", () => {
    const t = testStack();
    promiscuous(t);
    t.link.inject(IPV6.echo({ dst: "fd00:2::7" }));
    const r = oneReply(t, IPV6);
    expect(r.src).toBe("fd00:2::7");
    expect(r.dst).toBe("fd00:1::1");
    expect(t.stack.stats.icmp.v6.packetsSent.echoReply).toBe(1);
  });

  it("the handler sees packetInfo().localAddressTemporary true; returning false still answers", () => {
    const t = testStack();
    promiscuous(t);
    const info: NetworkPacketInfo[] = [];
    install(t, (req) => {
      info.push({ ...req.packetInfo() });
      return false;
    });
    t.link.inject(IPV6.echo({ dst: "fd00:2::7" }));
    expect(info).toEqual([{ localAddressTemporary: true, localAddressBroadcast: false }]);
    expect(oneReply(t, IPV6).src).toBe("fd00:2::7");
  });
});
