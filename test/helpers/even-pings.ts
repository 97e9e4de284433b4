/**
 * The README's ten-line policy, checked the same way for every language: once its session is
 * up, `ping -c 20` to each family gets exactly the even sequences answered, and the service
 * counts 10 reply and 10 consume verdicts and 10 built-in Echo Replies per family.
 */
import { expect } from "vitest";
import { type Netns, type Spawned, waitFor } from "./netns.js";
import type { ServeProcess } from "./serve.js";

export async function expectEvenPingsDecided(
  ns: Netns,
  serve: ServeProcess,
  policy: Spawned,
): Promise<void> {
  await waitFor(
    () => (serve.stats()["service.sessions"] ?? 0) === 1 || policy.child.exitCode !== null,
    { what: "the README policy's session", timeoutMs: 15_000 },
  );
  expect(policy.child.exitCode, policy.output()).toBeNull();
  const counter = (x: Record<string, number>, k: string) => x[k] ?? 0;
  for (const [family, dst] of [
    ["v4", "198.18.0.2"],
    ["v6", "fd00:1::2"],
  ] as const) {
    const before = serve.stats();
    const r = await ns.ping(["-n", "-c", "20", "-i", "0.05", "-W", "2", dst], {
      timeoutMs: 30_000,
    });
    expect(r.transmitted).toBe(20);
    expect(r.received, family).toBe(10);
    expect(r.seqs).toEqual([2, 4, 6, 8, 10, 12, 14, 16, 18, 20].slice(0, r.seqs.length));
    const after = await serve.waitVerdicts(20, before);
    const delta = (k: string) => counter(after, k) - counter(before, k);
    expect(delta("service.outcomes.reply.verdict"), family).toBe(10);
    expect(delta("service.outcomes.consume.verdict"), family).toBe(10);
    expect(delta(`icmp.${family}.packetsSent.echoReply`), family).toBe(10);
  }
}
