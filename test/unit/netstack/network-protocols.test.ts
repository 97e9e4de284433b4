/** StackOptions.networkProtocols: the stack runs the protocols its factories built, no others. */
import { describe, expect, it } from "vitest";
import { IPV4_PROTOCOL_NUMBER, IPV6_PROTOCOL_NUMBER } from "../../../src/netstack/buffer.js";
import { DEFAULT_NETWORK_PROTOCOLS } from "../../../src/netstack/default-protocols.js";
import { newIPv4Protocol } from "../../../src/netstack/ipv4/protocol.js";
import { newIPv6Protocol } from "../../../src/netstack/ipv6/protocol.js";
import { v4Echo, v6Echo } from "../../helpers/packets.js";
import { testStack } from "../../helpers/stack.js";

describe("network protocols by factory", () => {
  it("defaults to IPv4 and IPv6", () => {
    expect(DEFAULT_NETWORK_PROTOCOLS).toEqual([newIPv4Protocol, newIPv6Protocol]);
    const t = testStack();
    expect(t.stack.networkProtocolInstance(IPV4_PROTOCOL_NUMBER)?.number).toBe(
      IPV4_PROTOCOL_NUMBER,
    );
    expect(t.stack.networkProtocolInstance(IPV6_PROTOCOL_NUMBER)?.number).toBe(
      IPV6_PROTOCOL_NUMBER,
    );
    t.link.inject(v4Echo(), v6Echo());
    expect(t.link.drain()).toHaveLength(2);
  });

  it("an IPv4-only stack answers IPv4 and counts IPv6 as an unknown network protocol", () => {
    const t = testStack({ networkProtocols: [newIPv4Protocol] });
    expect(t.stack.networkProtocolInstance(IPV6_PROTOCOL_NUMBER)).toBeUndefined();
    t.link.inject(v6Echo(), v4Echo());
    expect(t.link.drain()).toHaveLength(1);
    expect(t.stack.stats.nic.unknownL3ProtocolRcvdPackets).toBe(1);
    expect(t.stack.stats.ipv6.packetsReceived).toBe(0);
    expect(t.stack.stats.icmp.v4.packetsSent.echoReply).toBe(1);
  });

  it("refuses two factories for one protocol number", () => {
    expect(() => testStack({ networkProtocols: [newIPv4Protocol, newIPv4Protocol] })).toThrow(
      RangeError,
    );
  });
});
