/**
 * A fail-closed configuration (every default action consume) holds on every path: timeout, no
 * client, overload, disconnect and the Forwarder's own overflow. Each test has its positive
 * control: the same request answered when a client says REPLY.
 */
import { describe, expect, it } from "vitest";
import { Action } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { v4Echo, v6Echo } from "../../helpers/packets.js";
import { type Harness, outcomes, serviceTests, type TestClient, tick } from "./harness.js";

const t = serviceTests();
const { connect } = t;
let h: Harness;
const FAIL_CLOSED = {
  onTimeout: "consume",
  onNoClient: "consume",
  onOverload: "consume",
  onDisconnect: "consume",
} as const;

/** Positive control: the client replies to the one request it holds, which is answered. */
async function replyIsAnswered(c: TestClient): Promise<void> {
  const events = await c.waitEvents(1);
  c.decide(events, Action.ACTION_REPLY);
  await c.until(() => h.counter("service.outcomes.reply.verdict") === 1, "control reply");
  await tick();
  expect(h.takeReplies()).toHaveLength(1);
}

/** Positive control with a new client, on the same service. */
async function replyControl(): Promise<void> {
  const c = await connect();
  h.link.inject(v4Echo({ ident: 999 }));
  await replyIsAnswered(c);
  c.close();
}

describe("fail-closed (every default action consume)", () => {
  it("tells the client its policy in the Welcome", async () => {
    h = await t.start({ policy: FAIL_CLOSED, deadlineMs: 250 });
    const c = await connect();
    expect(c.welcome?.onTimeout).toBe(Action.ACTION_CONSUME);
    expect(c.welcome?.onNoClient).toBe(Action.ACTION_CONSUME);
    expect(c.welcome?.onOverload).toBe(Action.ACTION_CONSUME);
    expect(c.welcome?.onDisconnect).toBe(Action.ACTION_CONSUME);
    expect(c.welcome?.deadline).toEqual({ seconds: 0n, nanos: 250_000_000 });
    expect(c.welcome?.protocolVersion).toBe(1);
  });

  it("holds on timeout", async () => {
    h = await t.start({ policy: FAIL_CLOSED, deadlineMs: 30 });
    const c = await connect();
    h.link.inject(v4Echo(), v6Echo());
    await c.until(() => h.counter("service.outcomes.consume.timeout") === 2, "timeouts");
    await tick();
    expect(h.takeReplies()).toHaveLength(0);
    c.close();
    await c.until(() => h.service.dispatcher.sessions.length === 0, "session closed");
    await replyControl();
  });

  it("holds with no client", async () => {
    h = await t.start({ policy: FAIL_CLOSED });
    h.link.inject(v4Echo(), v6Echo());
    expect(h.counter("service.outcomes.consume.noClient")).toBe(2);
    expect(h.takeReplies()).toHaveLength(0);
    await replyControl();
  });

  it("holds on overload", async () => {
    h = await t.start({ policy: FAIL_CLOSED });
    const c = await connect({ maxInFlight: 1 });
    h.link.inject(v4Echo({ sequence: 1 }), v4Echo({ sequence: 2 }), v6Echo());
    expect(h.counter("service.outcomes.consume.overload")).toBe(2);
    expect(h.takeReplies()).toHaveLength(0);
    await replyIsAnswered(c);
  });

  it("holds on disconnect", async () => {
    h = await t.start({ policy: FAIL_CLOSED });
    const c = await connect();
    h.link.inject(v4Echo({ sequence: 1 }), v6Echo());
    await c.waitEvents(2);
    c.cancel();
    await c.until(() => h.counter("service.outcomes.consume.disconnect") === 2, "disconnects");
    await tick();
    expect(h.takeReplies()).toHaveLength(0);
    await replyControl();
  });

  it("holds on the Forwarder's own overflow", async () => {
    h = await t.start({ policy: FAIL_CLOSED, forwarderMaxHeld: 1 });
    const c = await connect();
    h.link.inject(v4Echo({ sequence: 1 }), v4Echo({ sequence: 2 }), v6Echo());
    expect(h.counter("service.outcomes.consume.forwarderOverflow")).toBe(2);
    expect(h.takeReplies()).toHaveLength(0);
    await replyIsAnswered(c);
    expect(outcomes(h, null, null)).toBe(3);
  });
});
