/**
 * The audit log's hooks, as the service calls them: a session's opening and end (with its mode,
 * name and caller) and the server's own cuts as disconnects — a missing Hello, an unanswered
 * keepalive ping, a GOAWAY, a shutdown — never a connection the client ended itself.
 */
import { createConnection, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { Mode } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import type { AuditLog } from "../../../src/service/audit.js";
import { waitFor } from "../../helpers/netns.js";
import { serviceTests, startHarness } from "./harness.js";

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

/** A TCP connection that says the HTTP/2 preface and SETTINGS, then never answers anything. */
async function mute(address: string): Promise<Socket> {
  const port = Number(address.slice(address.lastIndexOf(":") + 1));
  const s = createConnection({ host: "127.0.0.1", port });
  await new Promise<void>((resolve, reject) => {
    s.once("connect", resolve);
    s.once("error", reject);
  });
  s.write(Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"));
  s.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])); // an empty SETTINGS frame
  s.on("error", () => {});
  return s;
}

const cuts = (calls: unknown[][]): unknown[][] => calls.filter((c) => c[0] === "disconnected");

describe("connections the server cuts", () => {
  it("a connection that leaves the keepalive ping unanswered is cut, and the cut is told", async () => {
    const r = recorder();
    const h = await t.start({
      audit: r.audit,
      grpcOptions: { "grpc.keepalive_time_ms": 100, "grpc.keepalive_timeout_ms": 200 },
    });
    const s = await mute(h.service.address);
    try {
      await waitFor(() => cuts(r.calls).length === 1, { what: "the cut", timeoutMs: 3000 });
      expect(cuts(r.calls)).toEqual([
        [
          "disconnected",
          { identity: "connection", peer: `127.0.0.1:${s.localPort}` },
          "connection cut: no answer to the keepalive ping within 200 ms",
        ],
      ]);
    } finally {
      s.destroy();
    }
  });

  it("a GOAWAY the server sends is told with its code and debug data", async () => {
    const r = recorder();
    const h = await t.start({
      audit: r.audit,
      grpcOptions: { "grpc.max_connection_age_ms": 200 },
    });
    const s = await mute(h.service.address);
    try {
      await waitFor(() => cuts(r.calls).length === 1, { what: "the GOAWAY", timeoutMs: 3000 });
      expect(cuts(r.calls)).toEqual([
        [
          "disconnected",
          { identity: "connection", peer: `127.0.0.1:${s.localPort}` },
          "GOAWAY NO_ERROR sent (max_age)",
        ],
      ]);
    } finally {
      s.destroy();
    }
  });

  it("connections open when the service stops are told as GOAWAY at shutdown", async () => {
    const r = recorder();
    const h = await startHarness({ audit: r.audit });
    const s = await mute(h.service.address);
    try {
      // The server has seen the connection once it answers with its own SETTINGS.
      await new Promise((resolve) => s.once("data", resolve));
      const port = s.localPort;
      await h.close();
      expect(cuts(r.calls)).toEqual([
        [
          "disconnected",
          { identity: "connection", peer: `127.0.0.1:${port}` },
          "GOAWAY NO_ERROR sent: the server is shutting down",
        ],
      ]);
    } finally {
      s.destroy();
    }
  });

  it("a connection the client closes is not a cut", async () => {
    const r = recorder();
    await t.start({ audit: r.audit });
    const c = await t.connect({ clientName: "leaves", mode: Mode.MODE_OBSERVE });
    c.close();
    await waitFor(() => r.calls.some((x) => x[0] === "sessionClosed"), { what: "the close" });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(cuts(r.calls)).toEqual([]);
  });
});
