/**
 * EchoAdmin (proto/icmpfwd/v1/admin.proto) over a real socket: TLS certificate rotation
 * without dropping sessions, a rotation that does not load refused, decision statistics for
 * `icmpfwd top`, and the admin right.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type ChannelCredentials, credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { beforeAll, describe, expect, it } from "vitest";
import {
  EchoAdminClient,
  type GetDecisionStatsRequest,
  type GetDecisionStatsResponse,
} from "../../../src/gen/icmpfwd/v1/admin.js";
import { Action } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { protoTimeOfMs } from "../../../src/service/wire.js";
import { tempDir } from "../../helpers/netns.js";
import { v4Echo } from "../../helpers/packets.js";
import { type Harness, serviceTests, TestClient } from "./harness.js";

const t = serviceTests();
let h: Harness;

function decisionStats(
  c: EchoAdminClient,
  r: Partial<GetDecisionStatsRequest> = {},
  md = new Metadata(),
): Promise<GetDecisionStatsResponse | ServiceError> {
  return new Promise((resolve) =>
    c.getDecisionStats({ window: undefined, ...r }, md, (e, res) => resolve(e ?? res)),
  );
}

const msOf = (d: { seconds: bigint; nanos: number } | undefined): number =>
  d === undefined ? Number.NaN : Number(d.seconds) * 1000 + d.nanos / 1e6;

describe("TLS certificate rotation", () => {
  let dir: string;
  const pem = (name: string) => readFileSync(join(dir, name));

  beforeAll(() => {
    dir = tempDir("icmpfwd-rotate-");
    // Two CAs, each signing a server certificate for 127.0.0.1.
    for (const n of ["1", "2"])
      execFileSync(
        "sh",
        [
          "-c",
          `openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=ca${n} -keyout ca${n}.key -out ca${n}.pem 2>/dev/null &&
          openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server${n}.key -out server${n}.csr 2>/dev/null &&
          printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext &&
          openssl x509 -req -in server${n}.csr -CA ca${n}.pem -CAkey ca${n}.key -CAcreateserial -days 1 -out server${n}.pem -extfile san.ext 2>/dev/null`,
        ],
        { cwd: dir },
      );
  });

  const trusting = (ca: string): ChannelCredentials => credentials.createSsl(pem(ca));

  it("new certificates apply to new connections; a session connected before keeps deciding", async () => {
    h = await t.start({ security: { tls: { cert: pem("server1.pem"), key: pem("server1.key") } } });
    const before = await TestClient.connect(
      h.service.address,
      {},
      { credentials: trusting("ca1.pem") },
    );
    expect(h.service.applyTls({ cert: pem("server2.pem"), key: pem("server2.key") })).toBeNull();
    // A new connection trusting only the old CA fails the handshake; the new CA works.
    const old = new EchoAdminClient(h.service.address, trusting("ca1.pem"));
    expect(((await decisionStats(old)) as ServiceError).code).toBe(14);
    old.close();
    const fresh = new EchoAdminClient(h.service.address, trusting("ca2.pem"));
    expect("latency" in (await decisionStats(fresh))).toBe(true);
    fresh.close();
    // The session from before the rotation still gets requests and decides them.
    h.link.inject(v4Echo({ sequence: 1 }));
    const [e] = await before.waitEvents(1);
    before.decide([e], Action.ACTION_REPLY);
    await before.until(() => h.counter("service.outcomes.reply.verdict") === 1, "the verdict");
    expect(before.status).toBeNull();
    before.close();
  });

  it("a key that does not match its certificate is refused, and the old certificate stays", async () => {
    h = await t.start({ security: { tls: { cert: pem("server1.pem"), key: pem("server1.key") } } });
    const e = h.service.applyTls({ cert: pem("server2.pem"), key: pem("server1.key") });
    expect(e?.kind).toBe("invalidArgument");
    expect(e?.message).toMatch(/^tlsCert \/ tlsKey: the new certificate does not load: /);
    const c = new EchoAdminClient(h.service.address, trusting("ca1.pem"));
    expect("latency" in (await decisionStats(c))).toBe(true);
    c.close();
  });
});

describe("GetDecisionStats", () => {
  it("gives receive-to-verdict percentiles overall and per session, and each session's pinned flows", async () => {
    h = await t.start();
    const c = await TestClient.connect(h.service.address, { clientName: "p" });
    h.link.inject(
      v4Echo({ ident: 1, sequence: 1 }),
      v4Echo({ ident: 2, sequence: 1 }),
      v4Echo({ ident: 3, sequence: 1 }),
    );
    const events = await c.waitEvents(3);
    c.decide(events, Action.ACTION_CONSUME);
    await c.until(() => h.counter("service.outcomes.consume.verdict") === 3, "3 verdicts");
    const admin = new EchoAdminClient(h.service.address, credentials.createInsecure());
    const r = (await decisionStats(admin)) as GetDecisionStatsResponse;
    expect(msOf(r.window)).toBe(10_000);
    expect(r.latency?.decisions).toBe(3n);
    expect(msOf(r.latency?.p99)).toBeGreaterThan(0);
    expect(msOf(r.latency?.p50)).toBeLessThanOrEqual(msOf(r.latency?.p99));
    expect(r.sessions).toHaveLength(1);
    expect(r.sessions[0].sessionId).toBe(c.welcome?.sessionId);
    expect(r.sessions[0].latency?.decisions).toBe(3n);
    expect(r.sessions[0].affinityFlows).toBe(3);
    expect(r.sessions[0].flowVerdicts).toBe(0);
    admin.close();
    c.close();
  });

  it("refuses a window outside 1–60 s, naming the field", async () => {
    h = await t.start();
    const admin = new EchoAdminClient(h.service.address, credentials.createInsecure());
    const e = (await decisionStats(admin, { window: protoTimeOfMs(120_000) })) as ServiceError;
    expect([e.code, e.details]).toEqual([3, "window: between 1000 and 60000 ms, got 120000 ms"]);
    admin.close();
  });

  it("needs the admin mode", async () => {
    h = await t.start({
      security: {
        authz: {
          tokens: { "observer-token-0123456789": "dashboard" },
          identities: { dashboard: { modes: ["observe"] } },
        },
      },
    });
    const admin = new EchoAdminClient(h.service.address, credentials.createInsecure());
    const md = new Metadata();
    md.set("authorization", "Bearer observer-token-0123456789");
    const e = (await decisionStats(admin, {}, md)) as ServiceError;
    expect([e.code, e.details]).toEqual([7, 'identity "dashboard" may not use the admin RPCs']);
    admin.close();
  });
});
