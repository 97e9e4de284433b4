/**
 * --max-connections: the gRPC listener holds at most that many connections; one more is closed
 * right after accept and audited as refused, naming the limit. Over a real loopback socket, with
 * raw HTTP/2 client sessions: a session the server took receives its SETTINGS frame, a refused
 * one closes without it.
 */
import http2 from "node:http2";
import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { resolveConfig } from "../../../src/config.js";
import { serviceOptionsOf } from "../../../src/daemon/components.js";
import type { AuditLog } from "../../../src/service/audit.js";
import { NO_AUDIT } from "../../../src/service/audit.js";
import { sleep } from "../../helpers/netns.js";
import { type Harness, serviceTests } from "./harness.js";

const t = serviceTests();

interface Refusal {
  peer: string;
  method: string;
  status: string;
  reason: string;
}

/** Opens an HTTP/2 session: "held" once the server's SETTINGS arrive, "closed" if it ends first. */
function open(
  h: Harness,
): Promise<{ outcome: "held" | "closed"; session: http2.ClientHttp2Session }> {
  const session = http2.connect(`http://${h.service.address}`);
  return new Promise((resolve) => {
    session.once("remoteSettings", () => resolve({ outcome: "held", session }));
    session.once("close", () => resolve({ outcome: "closed", session }));
    session.on("error", () => {});
  });
}

describe("connection cap", () => {
  it("--max-connections 3: three connections are held, a fourth is closed right after accept and audited with the limit; a closed one frees its place", async () => {
    const refusals: Refusal[] = [];
    const audit: AuditLog = {
      ...NO_AUDIT,
      refused: (peer, method, status, reason) => refusals.push({ peer, method, status, reason }),
    };
    const h = await t.start({
      ...serviceOptionsOf(resolveConfig({ maxConnections: 3 })),
      audit,
    });
    const held: Awaited<ReturnType<typeof open>>[] = [];
    for (let i = 0; i < 3; i++) held.push(await open(h));
    expect(held.map((c) => c.outcome)).toEqual(["held", "held", "held"]);

    const fourth = await open(h);
    expect(fourth.outcome).toBe("closed");
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toEqual({
      peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      method: "(connection)",
      status: "RESOURCE_EXHAUSTED",
      reason: "--max-connections 3 reached",
    });

    // One held connection ends: its place goes to the next one, and the one after is refused.
    await new Promise<void>((resolve) => held[0].session.close(resolve));
    await sleep(300);
    const fifth = await open(h);
    const sixth = await open(h);
    expect([fifth.outcome, sixth.outcome]).toEqual(["held", "closed"]);
    expect(refusals).toHaveLength(2);
    for (const c of [...held, fifth, sixth]) c.session.destroy();
  });

  it("connections reset or closed before their first bytes leave the service serving, and free their places", async () => {
    const h = await t.start({ ...serviceOptionsOf(resolveConfig({ maxConnections: 2 })) });
    const [host, port] = [h.service.address.split(":")[0], Number(h.service.address.split(":")[1])];
    for (let i = 0; i < 20; i++) {
      await new Promise<void>((resolve) => {
        const s = connect({ host, port }, () => {
          if (i % 2 === 0) s.resetAndDestroy();
          else s.end();
        });
        s.on("error", () => {});
        s.on("close", () => resolve());
      });
    }
    await sleep(300);
    const a = await open(h);
    const b = await open(h);
    expect([a.outcome, b.outcome]).toEqual(["held", "held"]);
    for (const c of [a, b]) c.session.destroy();
  });

  it("the default cap is 4096 connections per listener", () => {
    expect(resolveConfig({}).maxConnections).toBe(4096);
  });
});
