/**
 * Reload through the one interface: the daemon's reloadable parts (src/daemon/root.ts) applied
 * by the Reloader to a running service and stack, a refusal from any part keeping the old
 * configuration everywhere.
 */
import { describe, expect, it } from "vitest";
import { type Config, resolveConfig } from "../../../src/config.js";
import { Reloader } from "../../../src/daemon/reload.js";
import type { Reloadable } from "../../../src/daemon/reloadable.js";
import { reloadablesOf } from "../../../src/daemon/root.js";
import { isServiceError } from "../../../src/service/errors.js";
import { createLogger } from "../../../src/telemetry/logger.js";
import { v4Echo } from "../../helpers/packets.js";
import { type Harness, serviceTests } from "../service/harness.js";

const t = serviceTests();
const log = createLogger("silent");
/** A configuration that keeps the log silent when the logger part applies it. */
const config = (o: Record<string, unknown> = {}): Config =>
  resolveConfig({ logLevel: "silent", ...o });

/** A Reloader over the harness's real service and stack, resolving `next()` on each reload. */
function reloaderFor(h: Harness, initial: Config, next: () => Config): Reloader {
  return new Reloader(reloadablesOf(h.service, h.stack, log), initial, log, next);
}

describe("reload", () => {
  it("a changed on-overload reaches the Forwarder's overflow backstop", async () => {
    // maxHeld 0: every request meets the Forwarder's bound before the dispatcher sees it.
    const h = await t.start({ forwarderMaxHeld: 0 });
    h.link.inject(v4Echo({ sequence: 1 }));
    // Positive control: fallthrough, so the stack's own Echo Reply went out.
    expect(h.takeReplies()).toHaveLength(1);
    expect(h.counter("service.outcomes.fallthrough.forwarderOverflow")).toBe(1);

    const next = config({ onOverload: "consume" });
    const changes = await reloaderFor(h, config(), () => next).reload("test");
    expect(changes).toEqual([
      {
        key: "onOverload",
        oldValue: '"fallthrough"',
        newValue: '"consume"',
        contentsChanged: false,
      },
    ]);
    h.link.inject(v4Echo({ sequence: 2 }));
    expect(h.takeReplies()).toHaveLength(0);
    expect(h.service.forwarder.stats.overflow).toBe(2);
    expect(h.counter("service.outcomes.consume.forwarderOverflow")).toBe(2);
  });

  it("a changed deadline, default TTL and ICMP limit reach the dispatcher and the stack", async () => {
    const h = await t.start();
    const next = config({ deadline: 250, defaultTtl: 9, icmpRateLimit: 5, icmpBurst: 2 });
    const r = await reloaderFor(h, config(), () => next).reload("test");
    expect(isServiceError(r)).toBe(false);
    expect(h.service.dispatcher.deadlineMs).toBe(250);
    expect(h.stack.defaultTTL).toBe(9);
    h.link.inject(v4Echo());
    const [reply] = h.takeReplies();
    expect(reply[8]).toBe(9);
  });

  it("a part that refuses refuses the whole reload: the parts applied before it get their old settings back", async () => {
    const initial = config();
    const h = await t.start({ deadlineMs: initial.deadline });
    const applied: unknown[] = [];
    const refusing: Reloadable = {
      name: "refusing",
      keys: ["defaultTtl"],
      settings: (c) => c.defaultTtl,
      apply: (ttl) => (ttl === 64 ? null : "defaultTtl: not today"),
    };
    const parts = [...reloadablesOf(h.service, h.stack, log), refusing].map((p) => ({
      ...p,
      apply: (s: unknown) => {
        applied.push([p.name, s]);
        return p.apply(s);
      },
    }));
    const next = config({ deadline: 250, onTimeout: "consume", defaultTtl: 9 });
    const reloader = new Reloader(parts, initial, log, () => next);
    const r = await reloader.reload("test");
    expect(isServiceError(r) && r.kind).toBe("invalidArgument");
    expect(isServiceError(r) && r.message).toBe("defaultTtl: not today");
    // Everything went back: the dispatcher, the stack, and the running configuration.
    expect(h.service.dispatcher.deadlineMs).toBe(initial.deadline);
    expect(h.service.dispatcher.policy.onTimeout).toBe("fallthrough");
    expect(h.stack.defaultTTL).toBe(64);
    expect(reloader.config).toBe(initial);
    // The netstack part was given 9, then 64 again after the refusal.
    const netstack = applied.filter((a) => (a as [string])[0] === "netstack");
    expect(netstack.map((a) => (a as [string, { defaultTtl: number }])[1].defaultTtl)).toEqual([
      9, 64,
    ]);
  });

  it("the stack's refusal of a default TTL refuses the reload instead of being ignored", async () => {
    const h = await t.start();
    const netstack = reloadablesOf(h.service, h.stack, log).find(
      (p) => p.name === "netstack",
    ) as Reloadable;
    expect(netstack.apply({ defaultTtl: 300, icmpRateLimit: 1000, icmpBurst: 50 })).toBe(
      "defaultTtl: default TTL must be 1–255, got 300",
    );
    expect(h.stack.defaultTTL).toBe(64);
  });
});
