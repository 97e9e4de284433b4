import { describe, expect, it } from "vitest";
import { ChannelEndpoint } from "../../../src/link/channel.js";

describe("ChannelEndpoint", () => {
  it("refuses packets larger than its MTU", () => {
    const ep = new ChannelEndpoint(100);
    expect(ep.writePacket(new Uint8Array(101))?.kind).toBe("tooBig");
    expect(ep.writePacket(new Uint8Array(100))).toBeNull();
    expect(ep.pending).toBe(1);
  });
});
