/**
 * The audit log's hooks, as the service calls them: a session's opening and end (with its mode,
 * name and caller) and the server's own cuts as disconnects.
 */
import { describe, expect, it } from "vitest";
import { Mode } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import type { AuditLog } from "../../../src/service/audit.js";
import { waitFor } from "../../helpers/netns.js";
import { serviceTests } from "./harness.js";

const t = serviceTests();

/** Every hook call, in order, as [hook, …arguments]. */
function recorder(): { audit: AuditLog; calls: unknown[][] } {
  const calls: unknown[][] = [];
  const hook =
    (name: string) =>
    (...args: unknown[]): void => {
      calls.push([name, ...args]);
    };
  return {
    calls,
    audit: {
      sessionOpened: hook("sessionOpened"),
      sessionClosed: hook("sessionClosed"),
      adminChange: hook("adminChange"),
      refused: hook("refused"),
      disconnected: hook("disconnected"),
    },
  };
}

describe("the audit hooks", () => {
  it("a session's opening and end are told with its mode, name and caller", async () => {
    const r = recorder();
    await t.start({ audit: r.audit });
    const c = await t.connect({ clientName: "auditor", mode: Mode.MODE_OBSERVE });
    c.close();
    await waitFor(() => r.calls.length === 2, { what: "open and close" });
    const [opened, closed] = r.calls as [string, Record<string, unknown>, string?][];
    expect(opened[0]).toBe("sessionOpened");
    expect(opened[1]).toMatchObject({ clientName: "auditor", mode: "observe", identity: "uid:0" });
    expect(String(opened[1].peer)).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(closed[0]).toBe("sessionClosed");
    expect(closed[1]).toEqual(opened[1]);
    expect(closed[2]).toBe("ended");
  });

  it("a stream cut for a missing Hello is a disconnect, and no session was opened", async () => {
    const r = recorder();
    await t.start({ audit: r.audit, helloTimeoutMs: 200 });
    const silent = t.raw();
    await silent.until(() => silent.status, "the status", 3000);
    expect(r.calls).toEqual([
      [
        "disconnected",
        { identity: "uid:0", peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/) },
        "deadlineExceeded: no Hello came within 200 ms",
      ],
    ]);
  });
});
