/**
 * DESIGN.md §3: a request is valid only while the handler runs; afterwards id() and
 * packetInfo() still answer (copies), packetBuffer() throws RequestExpired, reply() returns
 * false. PacketBuffer.clone() is a deep copy that never carries the reply capability.
 */
import { describe, expect, it } from "vitest";
import { formatAddress } from "../../src/netstack/address.js";
import { replyHookSlot } from "../../src/netstack/buffer.js";
import {
  ForwarderRequest,
  type PacketBuffer,
  RequestExpired,
} from "../../src/netstack/index.js";
import { testStack } from "../helpers/stack.js";
import { FAMILIES, install, oneReply, wire } from "./families.js";

describe.each(FAMILIES)("request lifetime, $name", (f) => {
  it("after the handler returns: packetBuffer() throws RequestExpired, id() and packetInfo() still answer, a late reply() returns false and sends nothing", () => {
    const t = testStack();
    let saved: ForwarderRequest | null = null;
    let savedPkt: PacketBuffer | null = null;
    install(t, (req) => {
      saved = req;
      savedPkt = req.packetBuffer();
      return true;
    });
    t.link.inject(f.echo({ ident: 0x3344 }));
    const req = saved as unknown as ForwarderRequest;
    expect(req).toBeInstanceOf(ForwarderRequest);
    expect(() => req.packetBuffer()).toThrow(RequestExpired);
    expect(() => req.packetBuffer()).toThrow(/expired/);
    const id = req.id();
    expect(formatAddress(id.localAddress)).toBe(f.local);
    expect(id.localPort).toBe(0x3344);
    expect(formatAddress(id.remoteAddress)).toBe(f.remote);
    expect(id.remotePort).toBe(0);
    expect(req.packetInfo()).toEqual({ localAddressBroadcast: false, localAddressTemporary: false });
    expect(req.nicId()).toBe(1);
    expect(req.reply()).toBe(false);
    expect(wire(t, f)).toEqual([]);
    expect(f.sent(t.stack).echoReply).toBe(0);
    // The saved PacketBuffer no longer carries the reply hook either.
    expect((savedPkt as unknown as PacketBuffer)[replyHookSlot]).toBeNull();
  });

  it("id() is a copy: the handler changing the packet's addresses does not change it", () => {
    const t = testStack();
    let saved: ForwarderRequest | null = null;
    install(t, (req) => {
      saved = req;
      req.packetBuffer().data.fill(0);
      return true;
    });
    t.link.inject(f.echo());
    const id = (saved as unknown as ForwarderRequest).id();
    expect(formatAddress(id.localAddress)).toBe(f.local);
    expect(formatAddress(id.remoteAddress)).toBe(f.remote);
  });

  it("PacketBuffer.clone() deep-copies: mutating the clone leaves the original unchanged", () => {
    const t = testStack();
    const checks: boolean[] = [];
    install(t, (req) => {
      const original = req.packetBuffer();
      const before = original.data.slice();
      const c = original.clone();
      expect(c).not.toBe(original);
      expect([...c.data]).toEqual([...before]);
      expect(c.data.buffer).not.toBe(original.data.buffer);
      expect(c.nicId).toBe(original.nicId);
      expect(c.networkProtocol).toBe(original.networkProtocol);
      expect(c.transportOffset).toBe(original.transportOffset);
      expect(c.packetInfo).toEqual(original.packetInfo);
      expect(c.packetInfo).not.toBe(original.packetInfo);
      c.data.fill(0xee);
      c.packetInfo.localAddressTemporary = true;
      checks.push(
        original.data.every((b, i) => b === before[i]),
        original.packetInfo.localAddressTemporary === false,
      );
      return true;
    });
    t.link.inject(f.echo());
    expect(checks).toEqual([true, true]);
  });

  it("PacketBuffer.clone() has no reply capability; reply() on the original still works, once", () => {
    const t = testStack();
    const answers: (boolean | null)[] = [];
    install(t, (req) => {
      const c = req.packetBuffer().clone();
      expect(req.packetBuffer()[replyHookSlot]).not.toBeNull();
      answers.push(c[replyHookSlot]);
      // A request built around the clone cannot reply.
      answers.push(new ForwarderRequest(req.id(), c).reply());
      answers.push(req.reply());
      return true;
    });
    t.link.inject(f.echo());
    expect(answers).toEqual([null, false, true]);
    oneReply(t, f);
    expect(f.sent(t.stack).echoReply).toBe(1);
  });
});
