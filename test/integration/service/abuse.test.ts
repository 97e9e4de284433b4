/**
 * gRPC abuse (issue #14 item 4): garbage on the HTTP/2 connection, 10,000 streams on one
 * connection, a client that never reads, a Hello flood. Each ends in a gRPC status, an HTTP/2
 * refusal or Rejections; the service's memory stays bounded, it never crashes, and a normal
 * client is served right after. (A message over the size limit: bad-input.test.ts.)
 */
import http2 from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterEach, describe, expect, it } from "vitest";
import {
  Action,
  ClientMessage,
  Mode,
  RejectionReason,
} from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { waitFor } from "../../helpers/netns.js";
import { v4Echo } from "../../helpers/packets.js";
import {
  CONNECT_PATH,
  grpcFrame,
  type Harness,
  outcomes,
  pausedConnect,
  serviceTests,
} from "./harness.js";

const t = serviceTests();
let h: Harness;

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const heapUsed = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

// Whatever came before, a normal client is served and every request has one outcome.
afterEach(async () => {
  if (h === undefined) return;
  t.closeClients();
  const d = h.service.dispatcher;
  await waitFor(() => d.pendingCount === 0, { what: "nothing pending" });
  const c = await t.connect();
  h.link.inject(v4Echo({ ident: 777 }));
  const [e] = await c.waitEvents(1);
  c.decide([e], Action.ACTION_REPLY);
  await c.until(() => d.pendingCount === 0, "decided");
  expect(outcomes(h, null, null)).toBe(h.counter("service.requests"));
});

const hello = (): Buffer =>
  Buffer.from(
    ClientMessage.encode({
      message: {
        $case: "hello",
        value: {
          protocolVersion: 1,
          clientName: "abuse",
          mode: Mode.MODE_DECIDE,
          filter: undefined,
          maxInFlight: 0,
          payloadBytes: 0,
        },
      },
    }).finish(),
  );

/** An HTTP/2 frame. */
function h2Frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** HPACK: every header as a literal without indexing, new name, no Huffman (RFC 7541 §6.2.2). */
function hpack(headers: [string, string][]): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of headers) {
    // All names and values here are shorter than 127 bytes: one length byte each.
    parts.push(
      Buffer.from([0x00, k.length]),
      Buffer.from(k),
      Buffer.from([v.length]),
      Buffer.from(v),
    );
  }
  return Buffer.concat(parts);
}

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const HEADERS = 1;
const DATA = 0;
const RST_STREAM = 3;
const SETTINGS = 4;
const GOAWAY = 7;

/** A raw HTTP/2 client over TCP that writes what it likes and tallies the frames it gets. */
class RawH2 {
  readonly frames: Record<number, number> = {};
  readonly rstCodes: Record<number, number> = {};
  goaway: { lastStream: number; code: number } | null = null;
  closed = false;
  private buf = Buffer.alloc(0);

  private constructor(readonly socket: Socket) {
    socket.on("data", (d: Buffer) => this.read(d));
    socket.on("close", () => {
      this.closed = true;
    });
    socket.on("error", () => {});
  }

  static async connect(address: string): Promise<RawH2> {
    const i = address.lastIndexOf(":");
    const s = netConnect(Number(address.slice(i + 1)), address.slice(0, i));
    await new Promise<void>((resolve, reject) => s.once("connect", resolve).once("error", reject));
    return new RawH2(s);
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  private read(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    while (this.buf.length >= 9) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + len) return;
      const type = this.buf[3];
      const flags = this.buf[4];
      const payload = this.buf.subarray(9, 9 + len);
      this.frames[type] = (this.frames[type] ?? 0) + 1;
      if (type === SETTINGS && (flags & 1) === 0)
        this.write(h2Frame(SETTINGS, 1, 0, Buffer.alloc(0)));
      if (type === RST_STREAM) {
        const code = payload.readUInt32BE(0);
        this.rstCodes[code] = (this.rstCodes[code] ?? 0) + 1;
      }
      if (type === GOAWAY)
        this.goaway = {
          lastStream: payload.readUInt32BE(0) & 0x7fffffff,
          code: payload.readUInt32BE(4),
        };
      this.buf = this.buf.subarray(9 + len);
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}

describe("garbage on the HTTP/2 connection", () => {
  it("bytes that are not the HTTP/2 preface: the connection is closed, nothing else happens", async () => {
    h = await t.start();
    const before = heapUsed();
    for (let i = 0; i < 20; i++) {
      const c = await RawH2.connect(h.service.address);
      const junk = Buffer.alloc(4096);
      for (let j = 0; j < junk.length; j++) junk[j] = (j * 131 + i * 7) & 0xff;
      c.write(junk);
      await waitFor(() => c.closed, { what: "the server closes the connection" });
    }
    expect(h.service.dispatcher.sessions).toHaveLength(0);
    expect(heapUsed() - before).toBeLessThan(10 << 20);
  });

  it("a valid preface, then a malformed frame: GOAWAY FRAME_SIZE_ERROR", async () => {
    h = await t.start();
    const c = await RawH2.connect(h.service.address);
    c.write(PREFACE);
    c.write(h2Frame(SETTINGS, 0, 0, Buffer.alloc(0)));
    // A SETTINGS frame on a stream (must be stream 0) with a length that is not a multiple of 6.
    c.write(h2Frame(SETTINGS, 0, 1, Buffer.from([1, 2, 3])));
    await waitFor(() => c.goaway, { what: "GOAWAY" });
    // RFC 9113 §6.5: a SETTINGS frame whose length is not a multiple of 6 is a connection
    // error FRAME_SIZE_ERROR (6).
    expect(c.goaway).toEqual({ lastStream: 0, code: 6 });
    c.destroy();
    expect(h.service.dispatcher.sessions).toHaveLength(0);
  });

  it("garbage inside a Connect stream's gRPC framing: the call ends with a status, the service stays", async () => {
    h = await t.start();
    const session = http2.connect(`http://${h.service.address}`);
    session.on("error", () => {});
    const st = session.request({
      ":method": "POST",
      ":path": CONNECT_PATH,
      "content-type": "application/grpc",
      te: "trailers",
    });
    let status: string | undefined;
    st.on("trailers", (tr) => {
      status = String(tr["grpc-status"]);
    });
    st.on("response", (hd) => {
      if (hd["grpc-status"] !== undefined) status = String(hd["grpc-status"]);
    });
    st.on("data", () => {});
    st.on("error", () => {});
    // A compressed-flag byte of 7 and a length of 4 GiB − 1: no valid gRPC message.
    st.write(Buffer.from([7, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
    await waitFor(() => status !== undefined || st.closed, { what: "the call ends" });
    session.destroy();
    expect(status).not.toBe("0");
    expect(h.service.dispatcher.sessions).toHaveLength(0);
  });
});

describe("10,000 concurrent streams", () => {
  it("on one connection, ignoring SETTINGS_MAX_CONCURRENT_STREAMS: 100 sessions, the rest refused, then the connection closed", async () => {
    h = await t.start();
    const before = heapUsed();
    const c = await RawH2.connect(h.service.address);
    c.write(PREFACE);
    c.write(h2Frame(SETTINGS, 0, 0, Buffer.alloc(0)));
    const block = hpack([
      [":method", "POST"],
      [":scheme", "http"],
      [":path", CONNECT_PATH],
      [":authority", "localhost"],
      ["content-type", "application/grpc"],
      ["te", "trailers"],
    ]);
    const hi = grpcFrame(hello());
    const frames: Buffer[] = [];
    for (let i = 0; i < 10_000; i++) {
      const id = 1 + 2 * i;
      frames.push(h2Frame(HEADERS, 0x4, id, block));
      // Hello on the first 200 streams only (DATA is flow-controlled; HEADERS are not).
      if (i < 200) frames.push(h2Frame(DATA, 0, id, hi));
    }
    c.write(Buffer.concat(frames));
    await waitFor(() => c.closed, { what: "the connection to end", timeoutMs: 15_000 });
    const d = h.service.dispatcher;
    // The 100 streams within the limit became sessions (their Hellos were answered); the
    // streams beyond it were refused (RST_STREAM REFUSED_STREAM), and a client that keeps
    // opening refused streams loses its connection (GOAWAY), taking its sessions with it.
    expect(c.frames[DATA]).toBe(100);
    expect(h.counter("service.sessions.opened")).toBe(100);
    expect(c.rstCodes[7] ?? 0).toBeGreaterThan(0);
    expect(c.goaway?.lastStream).toBe(199);
    await waitFor(() => d.sessions.length === 0, { what: "the sessions end with the connection" });
    expect(h.counter("service.sessions.closed")).toBe(100);
    expect(heapUsed() - before).toBeLessThan(20 << 20);
  });
});

describe("a client that never reads", () => {
  it("its queue reaches 4,096 messages: the stream ends RESOURCE_EXHAUSTED, its request gets on-disconnect", async () => {
    h = await t.start({ deadlineMs: 10_000 });
    // A small window: the server's writes back up at once.
    const raw = pausedConnect(h.service.address, 1024);
    const { session, st, messages } = raw;
    st.write(grpcFrame(hello()));
    const d = h.service.dispatcher;
    await waitFor(() => d.sessions.length === 1, { what: "the session" });
    h.link.inject(v4Echo());
    await waitFor(() => d.pendingCount === 1, { what: "a request in flight" });
    // 5,000 verdicts for unknown ids (five batches of 1,000: a batch holds at most the
    // session's max_in_flight, 1,024): 5,000 Rejections the client never reads.
    for (let b = 0; b < 5; b++) {
      const verdicts = ClientMessage.encode({
        message: {
          $case: "verdicts",
          value: {
            verdicts: Array.from({ length: 1000 }, (_, i) => ({
              requestId: BigInt(1_000_000 + b * 1000 + i),
              action: Action.ACTION_CONSUME,
              applyToFlowMs: 0,
            })),
          },
        },
      }).finish();
      st.write(grpcFrame(Buffer.from(verdicts)));
    }
    await waitFor(() => d.sessions.length === 0, { what: "the session is cut" });
    expect(h.counter("service.outcomes.fallthrough.disconnect")).toBe(1);
    // Reading again: the queued messages, then the status.
    st.resume();
    await waitFor(() => raw.trailers !== null, { what: "the status", timeoutMs: 10_000 });
    session.destroy();
    expect(String(raw.trailers?.["grpc-status"])).toBe("8");
    expect(messages.filter((m) => m.message?.$case === "rejection").length).toBeLessThanOrEqual(
      4096,
    );
  });
});

describe("a Hello flood", () => {
  it("2,000 Hellos on one stream: one session, 1,999 PROTOCOL_VIOLATION Rejections", async () => {
    h = await t.start();
    const before = heapUsed();
    const c = t.raw();
    const one = ClientMessage.decode(hello());
    for (let i = 0; i < 2000; i++) c.send(one);
    await c.until(() => c.welcome, "Welcome");
    await c.until(() => c.rejections.length === 1999, "1,999 rejections", 15_000);
    expect(new Set(c.rejections.map((r) => r.reason))).toEqual(
      new Set([RejectionReason.REJECTION_REASON_PROTOCOL_VIOLATION]),
    );
    expect(h.service.dispatcher.sessions).toHaveLength(1);
    expect(h.counter("service.rejections.protocolViolation")).toBe(1999);
    c.close();
    await waitFor(() => h.service.dispatcher.sessions.length === 0, { what: "session gone" });
    c.rejections.length = 0;
    c.messages.length = 0;
    expect(heapUsed() - before).toBeLessThan(10 << 20);
  });

  it("200 clients saying Hello at once: each gets Welcome, every session ends with its client", async () => {
    h = await t.start();
    const before = heapUsed();
    // Each on a connection of its own (one connection carries at most 100 streams).
    const own = { channelOptions: { "grpc.use_local_subchannel_pool": 1 } };
    const clients = await Promise.all(Array.from({ length: 200 }, () => t.connect({}, own)));
    expect(clients.every((c) => c.welcome !== null)).toBe(true);
    expect(h.service.dispatcher.sessions).toHaveLength(200);
    t.closeClients();
    await waitFor(() => h.service.dispatcher.sessions.length === 0, { what: "sessions gone" });
    expect(heapUsed() - before).toBeLessThan(20 << 20);
  });
});
