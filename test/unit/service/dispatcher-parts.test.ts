/**
 * The dispatcher's parts on their own: live settings through apply(), session indices owned by
 * each dispatcher, writability asked of the session's sink, and the synthetic-reply refusals
 * explained from what the dispatcher remembers (RequestHistory).
 */
import { describe, expect, it } from "vitest";
import {
  Dispatcher,
  FAIL_OPEN,
  type FailurePolicy,
  type SessionSink,
} from "../../../src/service/dispatcher.js";
import type { EndedRequest } from "../../../src/service/ended-requests.js";
import { SessionFilter } from "../../../src/service/filter.js";
import { Outcomes } from "../../../src/service/outcomes.js";
import { type RequestHistory, SyntheticReplies } from "../../../src/service/synthetic-replies.js";

class Sink implements SessionSink {
  writable = true;
  send(): void {}
  reject(): void {}
  idle(): void {}
}

const CONSUME_ALL: FailurePolicy = {
  onTimeout: "consume",
  onNoClient: "consume",
  onOverload: "consume",
  onDisconnect: "consume",
};

describe("Dispatcher.apply", () => {
  it("replaces the deadline and the policy, keeping its own frozen copy", () => {
    const d = new Dispatcher({ deadlineMs: 100, policy: FAIL_OPEN, syntheticWindowMs: 0 });
    const policy = { deadline: 250, ...CONSUME_ALL };
    expect(d.apply(policy)).toBeNull();
    expect(d.deadlineMs).toBe(250);
    expect(d.policy).toEqual(CONSUME_ALL);
    policy.onTimeout = "fallthrough";
    expect(d.policy.onTimeout).toBe("consume");
    expect(Object.isFrozen(d.policy)).toBe(true);
  });
});

describe("sessions", () => {
  it("are numbered per dispatcher, not per process", () => {
    const indices = [0, 1].map(() => {
      const d = new Dispatcher({ deadlineMs: 100, policy: FAIL_OPEN, syntheticWindowMs: 0 });
      return [1, 2].map(() => d.openSession(SessionFilter.ALL, 8, new Sink()).index);
    });
    expect(indices).toEqual([
      [1, 2],
      [1, 2],
    ]);
  });

  it("take requests only while their sink says the stream is writable", () => {
    const d = new Dispatcher({ deadlineMs: 100, policy: FAIL_OPEN, syntheticWindowMs: 0 });
    const sink = new Sink();
    const slot = d.openSession(SessionFilter.ALL, 8, sink);
    expect(slot.canTake()).toBe(true);
    sink.writable = false;
    expect([slot.writable, slot.canTake()]).toEqual([false, false]);
    sink.writable = true;
    expect(slot.canTake()).toBe(true);
  });
});

describe("synthetic-reply refusals", () => {
  const ended = (e: Partial<EndedRequest>): EndedRequest => ({
    session: 1,
    action: "consume",
    cause: "verdict",
    timedOut: false,
    consumedByVerdict: true,
    syntheticSent: false,
    ...e,
  });

  const ECHO_REPLY = { kind: "echoReply", payload: undefined } as const;
  const SESSION_1 = {
    index: 1,
    meta: { sessionId: "s1", clientName: "c1", streamLink: undefined },
  };

  function replies(
    windowMs: number,
    pending: Map<number, number>,
    history: Map<number, EndedRequest>,
  ): SyntheticReplies {
    const h: RequestHistory = {
      pendingSession: (id) => pending.get(id) ?? null,
      ended: (id) => history.get(id) ?? null,
      markSyntheticSent: () => {},
    };
    return new SyntheticReplies({ windowMs }, null, new Outcomes(), h);
  }

  it("explain why each request may not get one", () => {
    const pending = new Map([
      [1, 1],
      [2, 7],
    ]);
    const history = new Map([
      [3, ended({})],
      [4, ended({ session: 7 })],
      [5, ended({ syntheticSent: true })],
      [6, ended({ action: "fallthrough", cause: "timeout", consumedByVerdict: false })],
    ]);
    const r = replies(10_000, pending, history);
    const why = (id: bigint) => r.reply(SESSION_1, id, ECHO_REPLY, 0);
    expect(why(1n)).toEqual({
      kind: "syntheticNotAllowed",
      message: "request 1: not consumed yet: send ACTION_CONSUME first",
    });
    expect(why(2n)).toEqual({
      kind: "foreignRequest",
      message: "request 2 was sent to another session",
    });
    expect(why(3n)?.message).toMatch(/too late: the synthetic-reply window \(10000 ms\)/);
    expect(why(4n)?.kind).toBe("foreignRequest");
    expect(why(5n)?.message).toMatch(/already sent/);
    expect(why(6n)?.message).toMatch(/its outcome was fallthrough \(timeout\)/);
    expect(why(99n)).toEqual({
      kind: "unknownRequest",
      message: "no consumed request 99 is remembered",
    });
    // Beyond 2^53 no id is remembered.
    expect(why(1n << 60n)?.kind).toBe("unknownRequest");
    expect(replies(0, pending, history).reply(SESSION_1, 3n, ECHO_REPLY, 0)?.message).toMatch(
      /synthetic replies are off/,
    );
  });
});
