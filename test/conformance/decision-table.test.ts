/**
 * DESIGN.md §3, the decision table, one test per row and per family. A row's test is named after
 * the row; the IPv4 temporary-address suppression is its own test in the rows that have it.
 */
import { describe, expect, it } from "vitest";
import { type ForwarderRequest, isTcpipError } from "../../src/netstack/index.js";
import { testStack } from "../helpers/stack.js";
import { BY_FAMILY, IPV4, IPV6, install, oneReply, promiscuous, wire } from "./families.js";

describe.each(BY_FAMILY)("decision table, %s", (_, f) => {
  const temporaryOutcome = f.suppressesTemporary ? "not sent" : "sent";

  describe("row: no ICMP default handler", () => {
    it("no ICMP default handler → built-in reply sent", () => {
      const t = testStack();
      t.link.inject(f.echo({ ident: 0x1111, sequence: 3 }));
      const r = oneReply(t, f);
      expect(r.src).toBe(f.local);
      expect(r.dst).toBe(f.remote);
      expect(r.ident).toBe(0x1111);
      expect(r.sequence).toBe(3);
      expect(f.received(t.stack).echoRequest).toBe(1);
      expect(f.sent(t.stack).echoReply).toBe(1);
    });

    it(`no ICMP default handler, temporary local address → ${temporaryOutcome}`, () => {
      const t = testStack();
      promiscuous(t);
      t.link.inject(f.echo({ dst: f.temporary }));
      expect(f.received(t.stack).echoRequest).toBe(1);
      if (f.suppressesTemporary) {
        expect(wire(t, f)).toEqual([]);
        expect(f.sent(t.stack).echoReply).toBe(0);
      } else {
        expect(oneReply(t, f).src).toBe(f.temporary);
        expect(f.sent(t.stack).echoReply).toBe(1);
      }
    });
  });

  describe("row: handler returns false, reply() not called", () => {
    it("handler returns false, reply() not called → built-in reply sent", () => {
      const t = testStack();
      const fwd = install(t, () => false);
      t.link.inject(f.echo());
      expect(oneReply(t, f).src).toBe(f.local);
      expect(f.sent(t.stack).echoReply).toBe(1);
      expect(fwd.stats).toMatchObject({ handled: 1, consumed: 0, notConsumed: 1 });
    });

    it(`handler returns false, reply() not called, temporary local address → ${temporaryOutcome}`, () => {
      const t = testStack();
      promiscuous(t);
      const fwd = install(t, () => false);
      t.link.inject(f.echo({ dst: f.temporary }));
      expect(fwd.stats.handled).toBe(1);
      expect(wire(t, f).length).toBe(f.suppressesTemporary ? 0 : 1);
      expect(f.sent(t.stack).echoReply).toBe(f.suppressesTemporary ? 0 : 1);
    });
  });

  describe("row: handler returns true, reply() not called", () => {
    it("handler returns true, reply() not called → no built-in reply", () => {
      const t = testStack();
      const fwd = install(t, () => true);
      t.link.inject(f.echo());
      expect(wire(t, f)).toEqual([]);
      expect(f.received(t.stack).echoRequest).toBe(1);
      expect(f.sent(t.stack).echoReply).toBe(0);
      expect(fwd.stats).toMatchObject({ handled: 1, consumed: 1, notConsumed: 0 });
    });
  });

  describe("row: reply() called (handler returns true or false)", () => {
    it.each([true, false])(
      "reply() called, handler returns %s → built-in path runs exactly once",
      (ret) => {
        const t = testStack();
        const answers: boolean[] = [];
        install(t, (req) => {
          answers.push(req.reply());
          return ret;
        });
        t.link.inject(f.echo({ ident: 0x2222, sequence: 9 }));
        expect(answers).toEqual([true]);
        const r = oneReply(t, f);
        expect(r.ident).toBe(0x2222);
        expect(r.sequence).toBe(9);
        expect(f.sent(t.stack).echoReply).toBe(1);
      },
    );

    it.each([true, false])(
      "reply() called for a temporary local address, handler returns %s → built-in path runs exactly once",
      (ret) => {
        const t = testStack();
        promiscuous(t);
        const answers: boolean[] = [];
        install(t, (req) => {
          answers.push(req.reply());
          return ret;
        });
        t.link.inject(f.echo({ dst: f.temporary }));
        expect(answers).toEqual([true]);
        expect(oneReply(t, f).src).toBe(f.temporary);
        expect(f.sent(t.stack).echoReply).toBe(1);
      },
    );

    it("reply() answers from the request's destination to the request's source", () => {
      const t = testStack();
      install(t, (req) => req.reply());
      t.link.inject(f.echo());
      const r = oneReply(t, f);
      expect(r.src).toBe(f.local);
      expect(r.dst).toBe(f.remote);
    });
  });

  describe("row: a registered ICMP endpoint matched", () => {
    it("a registered ICMP endpoint matched → handler not called, reply sent as with no handler", () => {
      const t = testStack();
      const ep = t.stack.openPingEndpoint({ family: f.family, ident: 0x4242 });
      expect(isTcpipError(ep)).toBe(false);
      const seen: ForwarderRequest[] = [];
      const fwd = install(t, (req) => {
        seen.push(req);
        return true; // would consume, if it were called
      });
      t.link.inject(f.echo({ ident: 0x4242, sequence: 5 }));
      expect(seen).toEqual([]);
      expect(fwd.stats.handled).toBe(0);
      const r = oneReply(t, f);
      expect(r.ident).toBe(0x4242);
      expect(r.sequence).toBe(5);
      expect(f.sent(t.stack).echoReply).toBe(1);
    });

    it(`a registered ICMP endpoint matched, temporary local address → as with no handler: ${temporaryOutcome}`, () => {
      const t = testStack();
      promiscuous(t);
      t.stack.openPingEndpoint({ family: f.family, ident: 0x4242 });
      const fwd = install(t, (req) => req.reply());
      t.link.inject(f.echo({ dst: f.temporary, ident: 0x4242 }));
      expect(fwd.stats.handled).toBe(0);
      expect(wire(t, f).length).toBe(f.suppressesTemporary ? 0 : 1);
    });
  });
});

describe("decision table: reply source for broadcast and multicast destinations", () => {
  it.each(["198.18.0.255", "255.255.255.255"])(
    "IPv4 broadcast %s + reply() → source = the NIC's primary address, localAddressBroadcast",
    (dst) => {
      const t = testStack();
      const info: boolean[] = [];
      install(t, (req) => {
        info.push(req.packetInfo().localAddressBroadcast, req.packetInfo().localAddressTemporary);
        return req.reply();
      });
      t.link.inject(IPV4.echo({ dst }));
      expect(info).toEqual([true, false]);
      const r = oneReply(t, IPV4);
      expect(r.src).toBe("198.18.0.2");
      expect(r.dst).toBe("198.18.0.1");
      expect(t.stack.stats.icmp.v4.packetsSent.echoReply).toBe(1);
    },
  );

  it("IPv4 multicast 224.0.0.1 + reply() → source = the NIC's primary address", () => {
    const t = testStack();
    install(t, (req) => req.reply());
    t.link.inject(IPV4.echo({ dst: "224.0.0.1" }));
    expect(oneReply(t, IPV4).src).toBe("198.18.0.2");
  });

  it("IPv6 multicast ff02::1 + reply() → source chosen by source-address selection", () => {
    const t = testStack();
    const info: boolean[] = [];
    install(t, (req) => {
      info.push(req.packetInfo().localAddressBroadcast);
      return req.reply();
    });
    t.link.inject(IPV6.echo({ dst: "ff02::1" }));
    expect(info).toEqual([false]);
    const r = oneReply(t, IPV6);
    expect(r.src).toBe("fd00:1::2");
    expect(r.dst).toBe("fd00:1::1");
  });
});

describe("documented deviation from gVisor", () => {
  it("an IPv4 Echo Request with a bad ICMP checksum is counted invalid and never reaches the handler", () => {
    // gVisor counts it invalid too but still hands it to raw sockets; this stack has none, so
    // the packet ends at the checksum check (DESIGN.md §3).
    const t = testStack();
    const fwd = install(t, (req) => req.reply());
    const p = IPV4.echo();
    p[20 + 2] ^= 0xff;
    t.link.inject(p);
    expect(fwd.stats.handled).toBe(0);
    expect(t.stack.stats.icmp.v4.packetsReceived.invalid).toBe(1);
    expect(t.stack.stats.icmp.v4.packetsReceived.echoRequest).toBe(0);
    expect(t.stack.stats.icmp.v4.packetsSent.echoReply).toBe(0);
    expect(t.link.drain()).toEqual([]);
  });
});
