/**
 * DESIGN.md §3: a request is valid only while the handler runs; afterwards id() and
 * packetInfo() still answer (copies), packetBuffer() throws RequestExpired, reply() returns
 * false. PacketBuffer.clone() is a deep copy that never carries the reply capability.
 */
import { describe, expect, it } from "vitest";
import { formatAddress } from "../../src/netstack/address.js";
import { replyHookSlot } from "../../src/netstack/buffer.js";
import { ForwarderRequest, type PacketBuffer, RequestExpired } from "../../src/netstack/index.js";
import { testStack } from "../helpers/stack.js";
import { BY_FAMILY, install, oneReply, wire } from "./families.js";

describe.each(BY_FAMILY)("request lifetime, %s", (_, f) => {
  it("after the handler returns: packetBuffer() throws RequestExpired, id() and packetInfo() still answer, a late reply() returns false and sends nothing", () => {
    const t = testStack();
    const saved: ForwarderRequest[] = [];
    const savedPkt: PacketBuffer[] = [];
    install(t, (req) => {
      saved.push(req);
      savedPkt.push(req.packetBuffer());
      return true;
    });
    t.link.inject(f.echo({ ident: 0x3344 }));
    expect(saved.length).toBe(1);
    const req = saved[0];
    expect(() => req.packetBuffer()).toThrow(RequestExpired);
    expect(() => req.packetBuffer()).toThrow(/expired/);
    const id = req.id();
    expect(formatAddress(id.localAddress)).toBe(f.local);
    expect(id.localPort).toBe(0x3344);
    expect(formatAddress(id.remoteAddress)).toBe(f.remote);
    expect(id.remotePort).toBe(0);
    expect(req.packetInfo()).toEqual({
      localAddressBroadcast: false,
      localAddressTemporary: false,
    });
    expect(req.nicId()).toBe(1);
    expect(req.reply()).toBe(false);
    expect(wire(t, f)).toEqual([]);
    expect(f.sent(t.stack).echoReply).toBe(0);
    // The saved PacketBuffer no longer carries the reply hook either.
    expect(savedPkt[0][replyHookSlot]).toBeNull();
  });

  it("id() is a copy: the handler changing the packet's addresses does not change it", () => {
    const t = testStack();
    const saved: ForwarderRequest[] = [];
    install(t, (req) => {
      saved.push(req);
      req.packetBuffer().data.fill(0);
      return true;
    });
    t.link.inject(f.echo());
    const id = saved[0].id();
    expect(formatAddress(id.localAddress)).toBe(f.local);
    expect(formatAddress(id.remoteAddress)).toBe(f.remote);
  });

  it("PacketBuffer.clone() deep-copies: mutating the clone leaves the original unchanged", () => {
    const t = testStack();
    // Assertions go after inject: the Forwarder counts a throwing handler, it does not rethrow.
    const seen: Record<string, unknown>[] = [];
    install(t, (req) => {
      const original = req.packetBuffer();
      const before = original.data.slice();
      const c = original.clone();
      seen.push({
        distinct: c !== original && c.data.buffer !== original.data.buffer,
        sameBytes: c.data.every((b, i) => b === before[i]) && c.data.length === before.length,
        sameFields: [c.nicId, c.networkProtocol, c.transportProtocol, c.transportOffset].join(),
        originalFields: [
          original.nicId,
          original.networkProtocol,
          original.transportProtocol,
          original.transportOffset,
        ].join(),
        infoDistinct: c.packetInfo !== original.packetInfo,
      });
      c.data.fill(0xee);
      c.packetInfo.localAddressTemporary = true;
      seen.push({
        originalBytesUnchanged: original.data.every((b, i) => b === before[i]),
        originalInfoUnchanged: original.packetInfo.localAddressTemporary === false,
      });
      return true;
    });
    t.link.inject(f.echo());
    expect(seen.length).toBe(2);
    expect(seen[0]).toMatchObject({ distinct: true, sameBytes: true, infoDistinct: true });
    expect(seen[0].sameFields).toBe(seen[0].originalFields);
    expect(seen[1]).toEqual({ originalBytesUnchanged: true, originalInfoUnchanged: true });
  });

  it("PacketBuffer.clone() has no reply capability; reply() on the original still works, once", () => {
    const t = testStack();
    const answers: unknown[] = [];
    install(t, (req) => {
      const c = req.packetBuffer().clone();
      answers.push(req.packetBuffer()[replyHookSlot] !== null, c[replyHookSlot]);
      // A request built around the clone cannot reply.
      answers.push(new ForwarderRequest(req.id(), c).reply());
      answers.push(req.reply());
      return true;
    });
    t.link.inject(f.echo());
    expect(answers).toEqual([true, null, false, true]);
    oneReply(t, f);
    expect(f.sent(t.stack).echoReply).toBe(1);
  });
});
