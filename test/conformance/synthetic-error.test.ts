/**
 * Synthetic ICMP errors: a proxy that consumed a request answers it later with the error a
 * router on the real path sent — Time Exceeded (traceroute's hops) or Destination Unreachable —
 * from that router's address. The stack builds it as it builds its own errors: the request's IP
 * header and as much of the request as fits in 576 (IPv4) / 1280 (IPv6) bytes, TTL 64, routed
 * like a reply from a temporary address, rate limited, counted.
 */
import { describe, expect, it } from "vitest";
import { type Address, parseAddress } from "../../src/netstack/address.js";
import {
  copyEchoRequest,
  type EchoRequestCopy,
  isTcpipError,
  type StackOptions,
  type SyntheticErrorKind,
  sendSyntheticError,
} from "../../src/netstack/index.js";
import { payloadOf, v4Echo } from "../helpers/packets.js";
import { type TestStack, testStack } from "../helpers/stack.js";
import { BY_FAMILY, type EchoOptions, type Family, IPV4, IPV6, install, wire } from "./families.js";

const ROUTER = { ipv4: "198.18.5.1", ipv6: "fd00:5::1" } as const;

function addr(text: string): Address {
  const a = parseAddress(text);
  if (a === null) throw new Error(`bad address ${text}`);
  return a;
}

/** A stack whose handler copies and consumes `request`; returns the copy. */
function consumedRaw(
  f: Family,
  request: Uint8Array,
  options: StackOptions & { routes?: boolean } = {},
): { t: TestStack; copy: EchoRequestCopy; request: Uint8Array } {
  const t = testStack(options);
  const copies: EchoRequestCopy[] = [];
  install(t, (req) => {
    const c = copyEchoRequest(req);
    if (isTcpipError(c)) return false;
    copies.push(c);
    return true;
  });
  t.link.inject(request);
  expect(copies.length).toBe(1);
  expect(wire(t, f)).toEqual([]);
  return { t, copy: copies[0], request };
}

function consumed(
  f: Family,
  echo: EchoOptions = {},
  options: StackOptions & { routes?: boolean } = {},
): { t: TestStack; copy: EchoRequestCopy; request: Uint8Array } {
  return consumedRaw(f, f.echo(echo), options);
}

const sent = (t: TestStack, f: Family) =>
  f.family === "ipv4" ? t.stack.stats.icmp.v4.packetsSent : t.stack.stats.icmp.v6.packetsSent;

const ipHeaderSize = (f: Family): number => (f.family === "ipv4" ? 20 : 40);

/** [type, code] each kind leaves as, per family. */
const TYPE_CODE: Record<"ipv4" | "ipv6", Record<SyntheticErrorKind, [number, number]>> = {
  ipv4: {
    timeExceeded: [11, 0],
    netUnreachable: [3, 0],
    hostUnreachable: [3, 1],
    protocolUnreachable: [3, 2],
    portUnreachable: [3, 3],
    adminProhibited: [3, 13],
  },
  ipv6: {
    timeExceeded: [3, 0],
    netUnreachable: [1, 0],
    hostUnreachable: [1, 3],
    protocolUnreachable: [4, 1],
    portUnreachable: [1, 4],
    adminProhibited: [1, 1],
  },
};

describe.each(BY_FAMILY)("synthetic ICMP errors, %s", (_, f) => {
  const router = ROUTER[f.family];

  it("Time Exceeded leaves from the router's address to the request's source, TTL 64, quoting the request as received", () => {
    const { t, copy, request } = consumed(f, {
      ident: 0x77,
      sequence: 3,
      ttl: 1,
      payload: payloadOf(56, 0x41),
    });
    expect(sendSyntheticError(t.stack, copy, { kind: "timeExceeded", source: addr(router) })).toBe(
      null,
    );
    const out = wire(t, f);
    expect(out.length).toBe(1);
    const e = out[0];
    expect([e.src, e.dst, e.ttl, e.type, e.code]).toEqual([
      router,
      f.remote,
      64,
      ...TYPE_CODE[f.family].timeExceeded,
    ]);
    expect(e.checksumsValid).toBe(true);
    // The ICMP error's body: 4 unused bytes, then the request byte for byte.
    expect([...e.bytes.subarray(ipHeaderSize(f) + 4, ipHeaderSize(f) + 8)]).toEqual([0, 0, 0, 0]);
    expect([...e.bytes.subarray(ipHeaderSize(f) + 8)]).toEqual([...request]);
    expect(sent(t, f)).toMatchObject({ timeExceeded: 1, dstUnreachable: 0, echoReply: 0 });
  });

  it("each kind leaves with its type and code", () => {
    for (const [kind, [type, code]] of Object.entries(TYPE_CODE[f.family])) {
      const { t, copy } = consumed(f);
      expect(
        sendSyntheticError(t.stack, copy, {
          kind: kind as SyntheticErrorKind,
          source: addr(router),
        }),
      ).toBeNull();
      const [e] = wire(t, f);
      expect([kind, e.type, e.code]).toEqual([kind, type, code]);
      expect(e.checksumsValid).toBe(true);
    }
  });

  it("the quote stops where the error datagram reaches 576 bytes (IPv4) / 1280 bytes (IPv6)", () => {
    const { t, copy, request } = consumed(f, { payload: payloadOf(1400, 0x5a) });
    expect(
      sendSyntheticError(t.stack, copy, { kind: "hostUnreachable", source: addr(router) }),
    ).toBe(null);
    const [e] = wire(t, f);
    const limit = f.family === "ipv4" ? 576 : 1280;
    expect(e.bytes.length).toBe(limit);
    const quoted = e.bytes.subarray(ipHeaderSize(f) + 8);
    expect([...quoted]).toEqual([...request.subarray(0, quoted.length)]);
  });

  it("the source must be a unicast address of the request's family that is not the stack's own; otherwise nothing is sent", () => {
    const { t, copy } = consumed(f);
    const refused =
      f.family === "ipv4"
        ? ["0.0.0.0", "224.0.0.1", "255.255.255.255", "127.0.0.1", f.local, "fd00:5::1"]
        : ["::", "ff02::1", "::1", "::ffff:198.18.5.1", f.local, "198.18.5.1"];
    for (const text of refused) {
      const err = sendSyntheticError(t.stack, copy, { kind: "timeExceeded", source: addr(text) });
      expect([text, err?.kind]).toEqual([text, "badAddress"]);
    }
    expect(wire(t, f)).toEqual([]);
    expect(sent(t, f)).toMatchObject({ timeExceeded: 0, noRoute: 0, rateLimited: 0 });
    // Positive control: the same copy, from a router's address.
    expect(sendSyntheticError(t.stack, copy, { kind: "timeExceeded", source: addr(router) })).toBe(
      null,
    );
    expect(wire(t, f).length).toBe(1);
  });

  it('with no route back → {kind: "noRoute"}, counted, nothing sent', () => {
    const { t, copy } = consumed(f, {}, { routes: false });
    const err = sendSyntheticError(t.stack, copy, { kind: "netUnreachable", source: addr(router) });
    expect(err).toMatchObject({ kind: "noRoute" });
    expect(wire(t, f)).toEqual([]);
    expect(sent(t, f)).toMatchObject({ dstUnreachable: 0, noRoute: 1 });
  });

  it("the ICMP rate limiter applies as to the stack's own errors", () => {
    const limited: StackOptions =
      f.family === "ipv4"
        ? { icmpv4RateLimitedTypes: [11], icmpBurst: 0 }
        : { icmpv6RateLimitedTypes: [3], icmpBurst: 0 };
    const { t, copy } = consumed(f, {}, limited);
    const err = sendSyntheticError(t.stack, copy, { kind: "timeExceeded", source: addr(router) });
    expect(err).toMatchObject({ kind: "rateLimited" });
    expect(wire(t, f)).toEqual([]);
    expect(sent(t, f)).toMatchObject({ timeExceeded: 0, rateLimited: 1 });
  });
});

describe("synthetic ICMP errors, per family", () => {
  it("IPv4: the quote keeps the request's options, as received", () => {
    const { t, copy, request } = consumed(IPV4, { payload: payloadOf(8, 1) });
    expect(copy.networkHeader.length).toBe(20);
    // Three NOPs and an End of Option List: a 24-byte header.
    const withOptions = consumedRaw(
      IPV4,
      v4Echo({ payload: payloadOf(8, 1), options: Uint8Array.of(1, 1, 1, 0) }),
    );
    expect(withOptions.copy.networkHeader.length).toBe(24);
    expect(
      sendSyntheticError(withOptions.t.stack, withOptions.copy, {
        kind: "timeExceeded",
        source: addr(ROUTER.ipv4),
      }),
    ).toBeNull();
    const [e] = wire(withOptions.t, IPV4);
    expect([...e.bytes.subarray(28)]).toEqual([...withOptions.request]);
    // Positive control: the plain request quotes 20 header bytes.
    expect(
      sendSyntheticError(t.stack, copy, { kind: "timeExceeded", source: addr(ROUTER.ipv4) }),
    ).toBe(null);
    expect([...wire(t, IPV4)[0].bytes.subarray(28)]).toEqual([...request]);
  });

  it("IPv6: protocol unreachable is Parameter Problem, unrecognized Next Header, pointing at the fixed header's Next Header field", () => {
    const { t, copy } = consumed(IPV6);
    expect(
      sendSyntheticError(t.stack, copy, { kind: "protocolUnreachable", source: addr(ROUTER.ipv6) }),
    ).toBeNull();
    const [e] = wire(t, IPV6);
    // The pointer (bytes 4–7 of the ICMPv6 message) names byte 6 of the quoted IPv6 header.
    expect([...e.bytes.subarray(44, 48)]).toEqual([0, 0, 0, 6]);
    expect(t.stack.stats.icmp.v6.packetsSent.paramProblem).toBe(1);
  });
});
