/**
 * The admin RPCs (GetStats, WatchStats, ListSessions, Ping), grpc.health.v1 and server
 * reflection, over a real socket.
 */
import { Client, credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import {
  EchoForwarderClient,
  type GetStatsResponse,
  Mode,
  type PingEvent,
  type PingRequest,
} from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { ICMPV4_ECHO, ICMPV4_ECHO_REPLY } from "../../../src/netstack/header/icmpv4.js";
import { protoTimeOfMs } from "../../../src/service/wire.js";
import { sleep } from "../../helpers/netns.js";
import { v4Echo } from "../../helpers/packets.js";
import { type Harness, serviceTests } from "./harness.js";

const t = serviceTests();
let h: Harness;

function admin(): EchoForwarderClient {
  return new EchoForwarderClient(h.service.address, credentials.createInsecure());
}

function ping(
  c: EchoForwarderClient,
  r: Partial<PingRequest>,
): Promise<{ events: PingEvent[]; error: ServiceError | null }> {
  const call = c.ping({
    destination: "",
    count: 1,
    interval: protoTimeOfMs(20),
    payloadSize: 8,
    timeout: protoTimeOfMs(300),
    ...r,
  });
  const events: PingEvent[] = [];
  return new Promise((resolve) => {
    call.on("data", (e: PingEvent) => events.push(e));
    call.on("end", () => resolve({ events, error: null }));
    call.on("error", (error: ServiceError) => resolve({ events, error }));
  });
}

/** Answers every Echo Request the stack sent with an Echo Reply from its destination. */
function answerPings(h: Harness, ttl: number): () => void {
  const timer = setInterval(() => {
    for (const p of h.link.drain()) {
      const ihl = (p[0] & 0x0f) * 4;
      if (p[0] >> 4 !== 4 || p[ihl] !== ICMPV4_ECHO) continue;
      const ident = (p[ihl + 4] << 8) | p[ihl + 5];
      const sequence = (p[ihl + 6] << 8) | p[ihl + 7];
      const from = [...p.subarray(12, 16)].join(".");
      const to = [...p.subarray(16, 20)].join(".");
      h.link.inject(
        v4Echo({
          type: ICMPV4_ECHO_REPLY,
          src: to,
          dst: from,
          ident,
          sequence,
          ttl,
          payload: p.subarray(ihl + 8),
        }),
      );
    }
  }, 5);
  return () => clearInterval(timer);
}

describe("GetStats and WatchStats", () => {
  it("WatchStats sends a snapshot at once, then one per interval", async () => {
    h = await t.start();
    const c = admin();
    const got: { at: number; r: GetStatsResponse }[] = [];
    const call = c.watchStats({ interval: protoTimeOfMs(150) });
    call.on("data", (r: GetStatsResponse) => got.push({ at: performance.now(), r }));
    call.on("error", () => {});
    await t.raw().until(() => got.length >= 1, "first snapshot");
    h.link.inject(v4Echo());
    await t.raw().until(() => got.length >= 3, "three snapshots", 2000);
    call.cancel();
    c.close();
    expect(got[0].r.counters["service.requests"]).toBe(0n);
    expect(got[2].r.counters["service.requests"]).toBe(1n);
    expect(got[2].at - got[1].at).toBeGreaterThanOrEqual(140);
  });

  it("WatchStats intervals are at least 100 ms", async () => {
    h = await t.start();
    const c = admin();
    const times: number[] = [];
    const call = c.watchStats({ interval: protoTimeOfMs(10) });
    call.on("data", () => times.push(performance.now()));
    call.on("error", () => {});
    await sleep(350);
    call.cancel();
    c.close();
    expect(times.length).toBeGreaterThanOrEqual(3);
    expect(times.length).toBeLessThanOrEqual(4);
    expect(times[2] - times[1]).toBeGreaterThanOrEqual(90);
  });
});

describe("ListSessions", () => {
  it("lists each session: name, mode, filter, in-flight, decided, peer, since", async () => {
    h = await t.start();
    const before = Date.now();
    const d = await t.connect({ clientName: "decider", maxInFlight: 7 });
    await t.connect({
      clientName: "watcher",
      mode: Mode.MODE_OBSERVE,
      filter: { family: 1, sourcePrefixes: [], destinationPrefixes: [], temporaryOnly: false },
    });
    h.link.inject(v4Echo());
    await d.waitEvents(1);
    const c = admin();
    const r = await new Promise<
      import("../../../src/gen/icmpfwd/v1/forwarder.js").ListSessionsResponse
    >((resolve, reject) => c.listSessions({}, (e, v) => (e ? reject(e) : resolve(v))));
    c.close();
    const [a, b] = [...r.sessions].sort((x, y) => x.clientName.localeCompare(y.clientName));
    expect([a.clientName, a.mode, a.maxInFlight, a.inFlight, a.decided]).toEqual([
      "decider",
      Mode.MODE_DECIDE,
      7,
      1,
      0n,
    ]);
    expect(a.sessionId).toBe(d.welcome?.sessionId);
    expect(a.peer).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(Number(a.connectedAt?.seconds) * 1000).toBeGreaterThanOrEqual(
      Math.floor(before / 1000) * 1000,
    );
    expect([b.clientName, b.mode, b.filter?.family]).toEqual(["watcher", Mode.MODE_OBSERVE, 1]);
  });
});

describe("Ping", () => {
  it("streams each reply with its RTT, TTL and source", async () => {
    h = await t.start();
    const stop = answerPings(h, 61);
    const c = admin();
    const r = await ping(c, { destination: "198.18.0.1", count: 3 });
    stop();
    c.close();
    expect(r.error).toBeNull();
    expect(r.events.map((e) => [e.sequence, e.received, e.ttl, [...e.source].join(".")])).toEqual([
      [1, true, 61, "198.18.0.1"],
      [2, true, 61, "198.18.0.1"],
      [3, true, 61, "198.18.0.1"],
    ]);
    expect(r.events.every((e) => e.rtt !== undefined)).toBe(true);
  });

  it("reports a sequence without a reply within the timeout as not received", async () => {
    h = await t.start();
    const c = admin();
    const r = await ping(c, { destination: "198.18.0.1", count: 1, timeout: protoTimeOfMs(100) });
    c.close();
    expect(r.events.map((e) => [e.sequence, e.received])).toEqual([[1, false]]);
  });

  it("refuses the netstack's own address with FAILED_PRECONDITION", async () => {
    h = await t.start();
    const c = admin();
    const r = await ping(c, { destination: "198.18.0.2" });
    c.close();
    expect(r.error?.code).toBe(9);
    expect(r.error?.details).toMatch(/198\.18\.0\.2 is the netstack's own address/);
  });

  it("refuses a temporary address of a promiscuous NIC with FAILED_PRECONDITION", async () => {
    h = await t.start();
    const { Subnet } = await import("../../../src/netstack/address.js");
    h.stack.setPromiscuousMode(1, true);
    h.stack.addRoute(Subnet.parse("198.18.128.0/17") as InstanceType<typeof Subnet>, 1);
    const c = admin();
    const r = await ping(c, { destination: "198.18.200.7" });
    c.close();
    expect(r.error?.code).toBe(9);
    expect(r.error?.details).toMatch(/198\.18\.200\.7 is a temporary address/);
  });

  it("refuses what is not an address with INVALID_ARGUMENT", async () => {
    h = await t.start();
    const c = admin();
    const r = await ping(c, { destination: "not-an-address" });
    c.close();
    expect(r.error?.code).toBe(3);
    expect(r.error?.details).toMatch(/destination: "not-an-address" is not an IP address/);
  });
});

/** grpc.health.v1.Health/Check of the whole server: the status number. */
function healthCheck(address: string): Promise<number> {
  const c = new Client(address, credentials.createInsecure());
  return new Promise((resolve, reject) =>
    c.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      () => Buffer.alloc(0),
      (b: Buffer) => b,
      {},
      new Metadata(),
      (e, r) => {
        c.close();
        if (e) reject(e);
        else resolve(r !== undefined && r.length >= 2 ? r[1] : 0);
      },
    ),
  );
}

describe("health", () => {
  it("is SERVING, and NOT_SERVING while draining", async () => {
    h = await t.start();
    expect(await healthCheck(h.service.address)).toBe(1);
    const d = await t.connect();
    h.link.inject(v4Echo());
    await d.waitEvents(1);
    const drained = h.service.drain(2000);
    await d.until(() => d.drainingSeen, "Draining");
    expect(await healthCheck(h.service.address)).toBe(2);
    d.close();
    await drained;
  });
});

/** A minimal protobuf field walker: (field number, bytes) of length-delimited fields. */
function lenFields(b: Uint8Array): [number, Uint8Array][] {
  const out: [number, Uint8Array][] = [];
  let i = 0;
  const varint = (): number => {
    let n = 0;
    let s = 1;
    for (;;) {
      const c = b[i++];
      n += (c & 0x7f) * s;
      if (c < 0x80) return n;
      s *= 128;
    }
  };
  while (i < b.length) {
    const tag = varint();
    if ((tag & 7) === 0) varint();
    else if ((tag & 7) === 2) {
      const len = varint();
      out.push([tag >> 3, b.subarray(i, i + len)]);
      i += len;
    } else throw new Error(`wire type ${tag & 7}`);
  }
  return out;
}

/** The service names a list_services request on `version` answers with. */
async function listServices(version: string): Promise<string[]> {
  const c = new Client(h.service.address, credentials.createInsecure());
  const call = c.makeBidiStreamRequest(
    `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
    (b: Buffer) => b,
    (b: Buffer) => b,
  );
  const names = await new Promise<string[]>((resolve, reject) => {
    call.on("data", (b: Buffer) => {
      // ServerReflectionResponse.list_services_response (6) → service (1) → name (1).
      const list = lenFields(b).find(([f]) => f === 6)?.[1] ?? new Uint8Array(0);
      resolve(lenFields(list).map(([, svc]) => Buffer.from(lenFields(svc)[0][1]).toString()));
    });
    call.on("error", reject);
    call.write(Buffer.from([0x3a, 0x00])); // list_services: ""
  });
  call.cancel();
  c.close();
  return names.sort();
}

describe("server reflection", () => {
  for (const version of ["v1", "v1alpha"]) {
    it(`lists icmpfwd.v1.EchoForwarder, icmpfwd.v1.EchoAdmin and grpc.health.v1.Health (grpc.reflection.${version})`, async () => {
      h = await t.start();
      expect(await listServices(version)).toEqual([
        "grpc.health.v1.Health",
        "icmpfwd.v1.EchoAdmin",
        "icmpfwd.v1.EchoForwarder",
      ]);
    });
  }

  it("is built on its first call and answers every later call, on both versions, from the one it built", async () => {
    h = await t.start();
    const both = ["grpc.health.v1.Health", "icmpfwd.v1.EchoAdmin", "icmpfwd.v1.EchoForwarder"];
    const answers = await Promise.all([listServices("v1"), listServices("v1alpha")]);
    answers.push(await listServices("v1"), await listServices("v1alpha"));
    expect(answers).toEqual([both, both, both, both]);
  });
});
