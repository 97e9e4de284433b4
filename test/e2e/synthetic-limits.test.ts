/**
 * The synthetic payload limit end to end: `icmpfwd serve` in a private namespace, the kernel's
 * ping, a policy client that consumes every request and answers it with a SyntheticReply. A
 * payload exactly at the limit (65,507 bytes IPv4, 65,527 IPv6) leaves as one reassemblable
 * datagram the kernel counts as an Echo Reply; one byte more is refused and nothing leaves. The
 * service's `service.synthetic.sent` equals the kernel's IcmpInEchoReps / Icmp6InEchoReplies.
 */
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { Action, RejectionReason } from "../../src/gen/icmpfwd/v1/forwarder.js";
import { describeNetns, Netns, tempDir } from "../helpers/netns.js";
import { type ServeProcess, startServe } from "../helpers/serve.js";
import { TestClient } from "../integration/service/harness.js";

describeNetns("synthetic payloads at and over the limit, end to end", () => {
  let ns: Netns;
  let serve: ServeProcess | null = null;
  let client: TestClient | null = null;

  beforeAll(async () => {
    ns = await Netns.create("synlim");
  });

  afterEach(async () => {
    client?.close();
    client = null;
    if (serve !== null) expect((await serve.stop()).code).toBe(0);
    serve = null;
  });

  afterAll(async () => {
    await ns?.destroy();
  });

  for (const [family, limit, target, kernelCounter] of [
    ["IPv4", 65_507, "198.18.0.2", "IcmpInEchoReps"],
    ["IPv6", 65_527, "fd00:1::2", "Icmp6InEchoReplies"],
  ] as const) {
    it(`${family}: a ${limit}-byte payload reaches the kernel as an Echo Reply; ${limit + 1} bytes are refused, nothing sent; the service's count equals the kernel's`, async () => {
      const socket = join(tempDir("icmpfwd-sock-"), "icmpfwd.sock");
      serve = await startServe(ns, ["--listen", `unix:${socket}`, "--deadline", "2000"]);
      // The events carry ping's 56-byte payload: its timestamp goes back in the reply.
      const c = await TestClient.connect(`unix:${socket}`, { payloadBytes: 56 });
      client = c;
      // Consume each request; sequence 1 gets the payload at the limit, sequence 2 one more.
      let seen = 0;
      c.call.on("data", () => {
        const fresh = c.events.slice(seen);
        seen = c.events.length;
        if (fresh.length === 0) return;
        c.decide(fresh, Action.ACTION_CONSUME);
        for (const e of fresh) {
          // ping's pattern (byte i is i & 0xff) behind its own timestamp.
          const payload = Uint8Array.from(
            { length: e.sequence === 1 ? limit : limit + 1 },
            (_, i) => i & 0xff,
          );
          payload.set(e.payload.subarray(0, 16));
          c.synthetic(e.requestId, payload);
        }
      });
      const kernelBefore = await ns.nstat(kernelCounter);
      const args = family === "IPv6" ? ["-6"] : [];
      const r = await ns.ping([...args, "-n", "-c", "2", "-i", "0.5", "-W", "3", target]);
      expect(r.transmitted).toBe(2);
      const s = await serve.waitStats(
        (x) =>
          (x["service.synthetic.sent"] ?? 0) + (x["service.rejections.invalidArgument"] ?? 0) === 2,
        "both synthetic replies answered",
      );
      const kernel = (await ns.nstat(kernelCounter)) - kernelBefore;
      expect(s["service.outcomes.consume.verdict"]).toBe(2);
      expect(s["service.synthetic.sent"]).toBe(1);
      expect(s["service.rejections.invalidArgument"]).toBe(1);
      const v = family === "IPv4" ? "v4" : "v6";
      expect(s[`icmp.${v}.packetsSent.echoReply`]).toBe(1);
      // What the service says it sent is what the kernel received: exactly one Echo Reply.
      expect(kernel).toBe(s["service.synthetic.sent"]);
      expect(r.received).toBe(1);
      const [rej] = await c.waitRejections(1);
      expect(rej.reason).toBe(RejectionReason.REJECTION_REASON_INVALID_ARGUMENT);
      expect(rej.message).toContain(`payload: at most ${limit} bytes`);
      expect(rej.message).toContain(`got ${limit + 1}`);
    });
  }
});
