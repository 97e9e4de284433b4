/**
 * IPv4 options on an Echo Request, case by case as gVisor's TestIPv4Sanity table has them:
 * Record Route and Timestamp are updated with this host and echoed, unknown options are left
 * out, a bad option gets Parameter Problem with the pointer Linux would send.
 */
import { describe, expect, it } from "vitest";
import { formatAddress } from "../../../src/netstack/address.js";
import type { PacketBuffer } from "../../../src/netstack/buffer.js";
import { checksum } from "../../../src/netstack/header/checksum.js";
import { ICMPv4Header } from "../../../src/netstack/header/icmpv4.js";
import { IPv4Header } from "../../../src/netstack/header/ipv4.js";
import { newIPv4Protocol } from "../../../src/netstack/ipv4/protocol.js";
import { newIPv6Protocol } from "../../../src/netstack/ipv6/protocol.js";
import { parseICMPv4Error } from "../../helpers/ip-packets.js";
import { payloadOf, v4Echo } from "../../helpers/packets.js";
import { testStack } from "../../helpers/stack.js";

/** gVisor's randomTimeOffset: 0x10203040 ms after midnight is 0x00ad1c40 ms into the day. */
const WALL_CLOCK_MS = 0x10203040;
const STAMP = [0x00, 0xad, 0x1c, 0x40];
/** The netstack's address, recorded in Record Route and Timestamp. */
const HOST = [198, 18, 0, 2];

/** A stack whose IPv4 protocol reads the wall clock above (a factory wrapping the default). */
function stackWithClock() {
  return testStack({
    networkProtocols: [
      (stack) => {
        const ipv4 = newIPv4Protocol(stack);
        ipv4.wallClockMs = () => WALL_CLOCK_MS;
        return ipv4;
      },
      newIPv6Protocol,
    ],
  });
}

/** Sends an Echo Request with `options` (a multiple of 4 bytes) and returns what came back. */
function echoWithOptions(options: number[], t = stackWithClock()) {
  const request = v4Echo({ options: Uint8Array.from(options), ident: 42, sequence: 123 });
  const copy = request.slice();
  t.link.inject(request);
  const out = t.link.drain();
  expect(out.length).toBeLessThanOrEqual(1);
  return { t, request: copy, reply: out[0] ?? null };
}

function expectEchoReply(options: number[], replyOptions: number[]) {
  const { t, request, reply } = echoWithOptions(options);
  expect(reply).not.toBeNull();
  const ip = new IPv4Header(reply!);
  expect(ip.ihl).toBe(20 + replyOptions.length);
  expect([...ip.options()]).toEqual(replyOptions);
  expect(ip.totalLength).toBe(request.length + replyOptions.length - options.length);
  expect(ip.isChecksumValid()).toBe(true);
  const icmp = new ICMPv4Header(reply!, ip.ihl, ip.totalLength - ip.ihl);
  expect(icmp.type).toBe(0);
  expect(icmp.ident).toBe(42);
  expect(icmp.sequence).toBe(123);
  expect(checksum(reply!, 0, ip.ihl)).toBe(0xffff);
  expect(t.stack.stats.icmp.v4.packetsSent.echoReply).toBe(1);
  expect(t.stack.stats.ipv4.malformedPacketsReceived).toBe(0);
  return t;
}

function expectParameterProblem(options: number[], pointer: number) {
  const { t, request, reply } = echoWithOptions(options);
  expect(reply).not.toBeNull();
  const e = parseICMPv4Error(reply!);
  expect(e.type).toBe(12);
  expect(e.code).toBe(0);
  expect(e.pointer).toBe(pointer);
  expect(formatAddress(e.src)).toBe("198.18.0.2");
  expect(formatAddress(e.dst)).toBe("198.18.0.1");
  expect(new IPv4Header(reply!).ihl).toBe(20);
  expect(new IPv4Header(reply!).totalLength).toBe(20 + 8 + request.length);
  // The whole offending datagram, exactly as it arrived.
  expect([...e.quoted]).toEqual([...request]);
  expect(e.checksumOk).toBe(true);
  const s = t.stack.stats;
  expect(s.ipv4.malformedPacketsReceived).toBe(1);
  expect(s.ipv4.packetsDelivered).toBe(0);
  expect(s.icmp.v4.packetsSent.paramProblem).toBe(1);
  expect(s.icmp.v4.packetsReceived.echoRequest).toBe(0);
  expect(s.icmp.v4.packetsSent.echoReply).toBe(0);
}

describe("IPv4 options on an Echo Request (gVisor's TestIPv4Sanity)", () => {
  it("echoes End of Option List options", () => {
    expectEchoReply([0, 0, 0, 0], [0, 0, 0, 0]);
  });

  it("echoes NOP options", () => {
    expectEchoReply([1, 1, 1, 1], [1, 1, 1, 1]);
  });

  it("echoes NOP and End of Option List options", () => {
    expectEchoReply([1, 1, 0, 0], [1, 1, 0, 0]);
  });

  it("counts the overflow of a full type 1 timestamp area and echoes it", () => {
    expectEchoReply(
      [68, 12, 13, 0x11, 192, 168, 1, 12, 1, 2, 3, 4],
      [68, 12, 13, 0x21, 192, 168, 1, 12, 1, 2, 3, 4],
    );
  });

  it("answers a full overflow counter with Parameter Problem at the flags octet", () => {
    expectParameterProblem([68, 12, 13, 0xf1, 192, 168, 1, 12, 1, 2, 3, 4], 23);
  });

  it("leaves an unknown option out of the reply", () => {
    expectEchoReply([10, 4, 9, 0], []);
  });

  it("answers an option with no length octet with Parameter Problem at the option", () => {
    expectParameterProblem([1, 1, 1, 68], 23);
  });

  it("answers option length 0 with Parameter Problem at the option", () => {
    expectParameterProblem([68, 0, 9, 0, 1, 2, 3, 4], 20);
  });

  it("answers option length 1 with Parameter Problem at the option", () => {
    expectParameterProblem([68, 1, 9, 0, 1, 2, 3, 4], 20);
  });

  it("answers an option longer than the option area with Parameter Problem at the option", () => {
    expectParameterProblem([68, 9, 9, 0, 1, 2, 3, 4], 20);
  });

  it("answers a timestamp length that fits no entry with Parameter Problem at the pointer", () => {
    expectParameterProblem([68, 7, 5, 0, 1, 2, 3, 0], 22);
  });

  it("adds a type 0 timestamp where there is room", () => {
    expectEchoReply(
      [68, 24, 21, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0, 0, 0, 0],
      [68, 24, 25, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, ...STAMP],
    );
  });

  it("counts the overflow of a full type 1 area with several entries", () => {
    expectEchoReply(
      [68, 20, 21, 0x11, 192, 168, 1, 12, 1, 2, 3, 4, 192, 168, 1, 13, 5, 6, 7, 8],
      [68, 20, 21, 0x21, 192, 168, 1, 12, 1, 2, 3, 4, 192, 168, 1, 13, 5, 6, 7, 8],
    );
  });

  it("adds this host's address and a timestamp to a type 1 area with room", () => {
    const head = [192, 168, 1, 12, 1, 2, 3, 4, 192, 168, 1, 13, 5, 6, 7, 8];
    expectEchoReply(
      [68, 28, 21, 0x01, ...head, 0, 0, 0, 0, 0, 0, 0, 0],
      [68, 28, 29, 0x01, ...head, ...HOST, ...STAMP],
    );
  });

  it("stamps a prespecified (type 3) slot holding this host's address", () => {
    expectEchoReply([68, 12, 5, 0x03, ...HOST, 0, 0, 0, 0], [68, 12, 13, 0x03, ...HOST, ...STAMP]);
  });

  it("passes a prespecified (type 3) slot of another host untouched", () => {
    expectEchoReply(
      [68, 12, 5, 0x03, 10, 0, 0, 1, 0, 0, 0, 0],
      [68, 12, 5, 0x03, 10, 0, 0, 1, 0, 0, 0, 0],
    );
  });

  it("answers an undefined timestamp flag with Parameter Problem at the flags octet", () => {
    expectParameterProblem([68, 8, 5, 0x02, 0, 0, 0, 0], 23);
  });

  it("answers timestamp pointer 0 with Parameter Problem at the pointer", () => {
    expectParameterProblem([68, 8, 0, 0x00, 0, 0, 0, 0], 22);
  });

  it("answers timestamp pointer 4 (one too small) with Parameter Problem at the pointer", () => {
    expectParameterProblem([68, 8, 4, 0x00, 0, 0, 0, 0], 22);
  });

  it("accepts timestamp pointer 5", () => {
    expectEchoReply([68, 8, 5, 0x00, 0, 0, 0, 0], [68, 8, 9, 0x00, ...STAMP]);
  });

  it("answers a type 1 slot with only 4 bytes left with Parameter Problem at the pointer", () => {
    expectParameterProblem(
      [68, 20, 17, 0x01, 192, 168, 1, 12, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0],
      22,
    );
  });

  it("ignores everything after End of Option List", () => {
    expectEchoReply(
      [68, 12, 13, 0x11, 192, 168, 1, 12, 1, 2, 3, 4, 0, 10, 3, 99],
      [68, 12, 13, 0x21, 192, 168, 1, 12, 1, 2, 3, 4, 0, 0, 0, 0],
    );
  });

  it("answers a truncated timestamp (length 1) with Parameter Problem at the option", () => {
    expectParameterProblem([68, 1, 0, 0], 20);
  });

  it("answers a timestamp shorter than its header with Parameter Problem at the length", () => {
    expectParameterProblem([68, 3, 5, 0], 21);
  });

  it("records this host in a record route with room", () => {
    expectEchoReply([7, 7, 4, 0, 0, 0, 0, 0], [7, 7, 8, ...HOST, 0]);
  });

  it("records this host after the addresses already recorded", () => {
    const route = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
    expectEchoReply([7, 23, 20, ...route, 0, 0, 0, 0, 0], [7, 23, 24, ...route, ...HOST, 0]);
  });

  it("echoes a full single-slot record route unchanged", () => {
    expectEchoReply([7, 7, 8, 1, 2, 3, 4, 0], [7, 7, 8, 1, 2, 3, 4, 0]);
  });

  it("echoes a full record route unchanged (no error, unlike timestamp)", () => {
    const route = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20];
    expectEchoReply([7, 23, 24, ...route, 0], [7, 23, 24, ...route, 0]);
  });

  it("answers record route pointer 0 with Parameter Problem at the pointer", () => {
    expectParameterProblem([7, 8, 0, 0, 0, 0, 0, 0], 22);
  });

  it("answers record route pointer 3 (one too small) with Parameter Problem at the pointer", () => {
    expectParameterProblem([7, 8, 3, 0, 0, 0, 0, 0], 22);
  });

  it("answers a record route with room for part of an address at the pointer (as Linux)", () => {
    expectParameterProblem([7, 8, 8, 1, 2, 3, 4, 0], 22);
  });

  it("answers a record route too short for one address with Parameter Problem at the length", () => {
    expectParameterProblem([7, 6, 4, 0, 0, 0, 1, 1], 21);
  });

  it("answers a record route shorter than its header with Parameter Problem at the length", () => {
    expectParameterProblem([7, 2, 1, 1], 21);
  });

  it("answers a duplicate record route with Parameter Problem at the second one", () => {
    expectParameterProblem([7, 7, 8, 1, 2, 3, 4, 7, 7, 8, 1, 2, 3, 4, 0, 0], 27);
  });

  it("echoes a Router Alert option with value 0 unchanged", () => {
    const t = expectEchoReply([148, 4, 0, 0], [148, 4, 0, 0]);
    expect(t.stack.stats.ipv4.optionRouterAlertReceived).toBe(1);
  });

  it("answers a Router Alert with a reserved value with Parameter Problem at the value", () => {
    expectParameterProblem([148, 4, 0, 1], 22);
  });

  it("answers a Router Alert of length 3 with Parameter Problem at the length", () => {
    expectParameterProblem([148, 3, 0, 1], 21);
  });

  it("counts the options it sees by kind", () => {
    const t = expectEchoReply(
      [7, 7, 4, 0, 0, 0, 0, 68, 8, 5, 0, 0, 0, 0, 0, 10, 4, 0, 0, 1],
      [7, 7, 8, ...HOST, 68, 8, 9, 0, ...STAMP, 1],
    );
    const s = t.stack.stats.ipv4;
    expect(s.optionRecordRouteReceived).toBe(1);
    expect(s.optionTimestampReceived).toBe(1);
    expect(s.optionUnknownReceived).toBe(1);
    expect(s.optionRouterAlertReceived).toBe(0);
  });
});

describe("IPv4 options with something above the network layer", () => {
  it("echoes the processed options from the copy a handler cannot change", () => {
    const t = stackWithClock();
    let seen: number[] = [];
    t.stack.setTransportProtocolHandler(1, (_id, pkt: PacketBuffer) => {
      seen = [...pkt.networkHeader().subarray(20)];
      pkt.data.fill(0xee, 20, pkt.networkHeaderLength);
      return false;
    });
    const { reply } = echoWithOptions([7, 7, 4, 0, 0, 0, 0, 0, 10, 4, 9, 0], t);
    // The handler sees this host recorded, the unknown option already left out.
    expect(seen).toEqual([7, 7, 8, ...HOST, 0, 0, 0, 0, 0]);
    const ip = new IPv4Header(reply!);
    expect([...ip.options()]).toEqual([7, 7, 8, ...HOST, 0]);
    expect(checksum(reply!, 0, ip.ihl)).toBe(0xffff);
    expect(ip.isChecksumValid()).toBe(true);
  });

  it("hands other ICMP messages up with unknown options kept and record route updated", () => {
    const t = stackWithClock();
    let seen: number[] = [];
    t.stack.setTransportProtocolHandler(1, (_id, pkt: PacketBuffer) => {
      seen = [...pkt.networkHeader().subarray(20)];
      expect(new IPv4Header(pkt.data).isChecksumValid()).toBe(true);
      return true;
    });
    t.link.inject(v4Echo({ type: 13, options: Uint8Array.of(7, 7, 4, 0, 0, 0, 0, 10, 4, 9, 0) }));
    expect(t.link.drain()).toEqual([]);
    expect(seen).toEqual([7, 7, 8, ...HOST, 10, 4, 9, 0, 0]);
    expect(t.stack.stats.icmp.v4.packetsReceived.timestamp).toBe(1);
  });

  it("leaves the options of an ICMP message with a bad checksum unprocessed (counted invalid)", () => {
    const t = stackWithClock();
    const p = v4Echo({ options: Uint8Array.of(7, 0, 0, 0) });
    p[p.length - 1] ^= 0xff;
    t.link.inject(p);
    expect(t.link.drain()).toEqual([]);
    expect(t.stack.stats.ipv4.malformedPacketsReceived).toBe(0);
    expect(t.stack.stats.icmp.v4.packetsReceived.invalid).toBe(1);
  });

  it("keeps the in-place fast path for a request with options and a large payload", () => {
    const t = stackWithClock();
    const p = v4Echo({ options: Uint8Array.of(10, 4, 9, 0, 1, 1, 1, 1), payload: payloadOf(1000) });
    t.link.inject(p);
    const [reply] = t.link.drain();
    const ip = new IPv4Header(reply);
    expect(ip.ihl).toBe(24);
    expect([...ip.options()]).toEqual([1, 1, 1, 1]);
    expect(ip.totalLength).toBe(reply.length);
    expect(new ICMPv4Header(reply, 24, reply.length - 24).payload()).toEqual(payloadOf(1000));
  });
});
