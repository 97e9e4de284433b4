/**
 * The service on a real loopback socket (port 0) in front of a stack on the in-memory channel
 * link, and a small grpc-js client that records everything the server sends.
 */
import http2 from "node:http2";
import {
  type ChannelCredentials,
  type ChannelOptions,
  Client,
  type ClientDuplexStream,
  credentials,
  Metadata,
  type StatusObject,
} from "@grpc/grpc-js";
import { afterEach } from "vitest";
import { resolveConfig } from "../../../src/config.js";
import { serviceOptionsOf } from "../../../src/daemon/components.js";
import {
  Action,
  ClientMessage,
  type EchoRequest,
  type Hello,
  Mode,
  type Rejection,
  ServerMessage,
  type SyntheticErrorType,
  type Verdict,
  type Welcome,
} from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { ICMPV4_ECHO_REPLY } from "../../../src/netstack/header/icmpv4.js";
import { ICMPV6_ECHO_REPLY } from "../../../src/netstack/header/icmpv6.js";
import { FAIL_OPEN, type FailurePolicy } from "../../../src/service/dispatcher.js";
import { EchoService, type ServiceOptions } from "../../../src/service/index.js";
import { waitFor } from "../../helpers/netns.js";
import { type TestStack, testStack } from "../../helpers/stack.js";

export const CONNECT_PATH = "/icmpfwd.v1.EchoForwarder/Connect";

export interface Harness extends TestStack {
  service: EchoService;
  /** Echo Replies the stack wrote since the last call (IPv4 and IPv6). */
  takeReplies(): Uint8Array[];
  counter(name: string): number;
  close(): Promise<void>;
}

export async function startHarness(
  o: Partial<Omit<ServiceOptions, "policy" | "stack">> & {
    policy?: Partial<FailurePolicy>;
    stack?: Parameters<typeof testStack>[0];
  } = {},
): Promise<Harness> {
  const { stack: stackOptions, ...options } = o;
  const ts = testStack(stackOptions);
  const service = await EchoService.start({
    ...serviceOptionsOf(resolveConfig({})),
    listen: "127.0.0.1:0",
    deadlineMs: 1000,
    ...options,
    policy: { ...FAIL_OPEN, ...o.policy },
    stack: ts.stack,
  });
  return {
    ...ts,
    service,
    takeReplies: () =>
      ts.link.drain().filter((p) => {
        const v4 = p[0] >> 4 === 4;
        const type = v4 ? p[(p[0] & 0x0f) * 4] : p[40];
        return v4 ? type === ICMPV4_ECHO_REPLY : type === ICMPV6_ECHO_REPLY;
      }),
    counter: (name) => {
      const v = service.counters()[name];
      if (v === undefined) throw new Error(`no counter ${name}`);
      return v;
    },
    close: async () => {
      await service.close();
      ts.stack.close();
    },
  };
}

/** The sum of service.outcomes.*.<cause> (or of one action). */
export function outcomes(h: Harness, action: string | null, cause: string | null): number {
  let n = 0;
  for (const [k, v] of Object.entries(h.service.counters())) {
    const m = /^service\.outcomes\.(\w+)\.(\w+)$/.exec(k);
    if (m && (action === null || m[1] === action) && (cause === null || m[2] === cause)) n += v;
  }
  return n;
}

/** One loop turn: lets promise chains and replies settle. */
export const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

type HarnessOptions = Parameters<typeof startHarness>[0];

/**
 * A test file's service and clients: start() and connect() record what they open, and
 * afterEach closes it all.
 */
export function serviceTests(): {
  start(o?: HarnessOptions): Promise<Harness>;
  connect(hello?: Partial<Hello>, o?: ClientOptions): Promise<TestClient>;
  /** A client that has not said Hello. */
  raw(): TestClient;
  /** Closes the clients opened so far (the service stays). */
  closeClients(): void;
} {
  let h: Harness | null = null;
  const clients: TestClient[] = [];
  const closeClients = (): void => {
    for (const c of clients.splice(0)) c.close();
  };
  afterEach(async () => {
    closeClients();
    await h?.close();
    h = null;
  });
  const running = (): Harness => {
    if (h === null) throw new Error("start() the service first");
    return h;
  };
  return {
    async start(o) {
      h = await startHarness(o);
      return h;
    },
    async connect(hello = {}, o = {}) {
      const c = await TestClient.connect(running().service.address, hello, o);
      clients.push(c);
      return c;
    },
    raw() {
      const c = new TestClient(running().service.address);
      clients.push(c);
      return c;
    },
    closeClients,
  };
}

const rawSerialize = (b: Buffer): Buffer => b;

export interface ClientOptions {
  credentials?: ChannelCredentials;
  /** Sent as `authorization: Bearer TOKEN`. */
  token?: string;
  /** grpc-js channel options (e.g. a connection of its own). */
  channelOptions?: ChannelOptions;
}
const encode = (m: ClientMessage): Buffer => Buffer.from(ClientMessage.encode(m).finish());

/** A policy client over a real socket; sends raw bytes so tests can send anything. */
export class TestClient {
  readonly events: EchoRequest[] = [];
  readonly rejections: Rejection[] = [];
  readonly messages: ServerMessage[] = [];
  welcome: Welcome | null = null;
  drainingSeen = false;
  status: StatusObject | null = null;
  ended = false;
  readonly call: ClientDuplexStream<Buffer, ServerMessage>;
  private readonly client: Client;

  /** Observe mode: EchoRequestBatch.observer_drops summed over the batches received. */
  observerDrops = 0n;

  constructor(address: string, o: ClientOptions = {}) {
    this.client = new Client(
      address,
      o.credentials ?? credentials.createInsecure(),
      o.channelOptions,
    );
    const md = new Metadata();
    if (o.token !== undefined) md.set("authorization", `Bearer ${o.token}`);
    this.call = this.client.makeBidiStreamRequest(
      CONNECT_PATH,
      rawSerialize,
      (b: Buffer) => ServerMessage.decode(b),
      md,
    );
    this.call.on("data", (m: ServerMessage) => {
      this.messages.push(m);
      const msg = m.message;
      if (msg?.$case === "welcome") this.welcome = msg.value;
      else if (msg?.$case === "requests") {
        this.events.push(...msg.value.requests);
        this.observerDrops += msg.value.observerDrops;
      } else if (msg?.$case === "rejection") this.rejections.push(msg.value);
      else if (msg?.$case === "draining") this.drainingSeen = true;
    });
    this.call.on("status", (s: StatusObject) => {
      this.status = s;
    });
    this.call.on("end", () => {
      this.ended = true;
    });
    this.call.on("error", () => {});
  }

  /** Connects and says Hello (decide mode by default); waits for the Welcome. */
  static async connect(
    address: string,
    hello: Partial<Hello> = {},
    o: ClientOptions = {},
  ): Promise<TestClient> {
    const c = new TestClient(address, o);
    c.hello(hello);
    await c.until(() => c.welcome !== null || c.status !== null, "Welcome");
    if (c.welcome === null) throw new Error(`no Welcome: ${JSON.stringify(c.status)}`);
    return c;
  }

  hello(h: Partial<Hello> = {}): void {
    this.send({
      message: {
        $case: "hello",
        value: {
          protocolVersion: 1,
          clientName: "test",
          mode: Mode.MODE_DECIDE,
          filter: undefined,
          maxInFlight: 0,
          payloadBytes: 0,
          ...h,
        },
      },
    });
  }

  send(m: ClientMessage): void {
    this.call.write(encode(m));
  }

  sendRaw(b: Buffer): void {
    this.call.write(b);
  }

  verdicts(vs: Partial<Verdict>[]): void {
    this.send({
      message: {
        $case: "verdicts",
        value: {
          verdicts: vs.map((v) => ({
            requestId: 0n,
            action: Action.ACTION_UNSPECIFIED,
            applyToFlowMs: 0,
            ...v,
          })),
        },
      },
    });
  }

  /** Answers these events with one action, in one batch. */
  decide(events: readonly EchoRequest[], action: Action, applyToFlowMs = 0): void {
    this.verdicts(events.map((e) => ({ requestId: e.requestId, action, applyToFlowMs })));
  }

  synthetic(requestId: bigint, payload?: Uint8Array): void {
    this.send({
      message: {
        $case: "syntheticReply",
        value: { requestId, payload: payload === undefined ? undefined : Buffer.from(payload) },
      },
    });
  }

  /** A SyntheticReply asking for an ICMP error (`payload` too: a malformed message). */
  syntheticError(
    requestId: bigint,
    type: SyntheticErrorType,
    source: string,
    payload?: Uint8Array,
  ): void {
    this.send({
      message: {
        $case: "syntheticReply",
        value: {
          requestId,
          payload: payload === undefined ? undefined : Buffer.from(payload),
          error: { type, source },
        },
      },
    });
  }

  drain(): void {
    this.send({ message: { $case: "drain", value: {} } });
  }

  async until<T>(fn: () => T, what: string, timeoutMs = 5000): Promise<NonNullable<T>> {
    return waitFor(fn, { what, timeoutMs, intervalMs: 2 });
  }

  /** Waits until at least `n` events arrived. */
  async waitEvents(n: number, timeoutMs = 5000): Promise<EchoRequest[]> {
    await this.until(() => this.events.length >= n, `${n} events`, timeoutMs);
    return this.events;
  }

  async waitRejections(n: number): Promise<Rejection[]> {
    await this.until(() => this.rejections.length >= n, `${n} rejections`);
    return this.rejections;
  }

  async waitStatus(): Promise<StatusObject> {
    return this.until(() => this.status, "the call's status");
  }

  /** Half-closes the stream (the client is done). */
  end(): void {
    this.call.end();
  }

  cancel(): void {
    this.call.cancel();
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

/**
 * A Connect stream over a raw HTTP/2 client with the given stream window (gRPC framing by
 * hand), paused at once: it reads nothing until `st.resume()`, so no WINDOW_UPDATE goes back.
 * What it reads is decoded into `messages`; the trailers and the close time are kept.
 */
export function pausedConnect(
  address: string,
  initialWindowSize: number,
): {
  session: http2.ClientHttp2Session;
  st: http2.ClientHttp2Stream;
  messages: ServerMessage[];
  trailers: http2.IncomingHttpHeaders | null;
  closedAt: number;
} {
  const session = http2.connect(`http://${address}`, { settings: { initialWindowSize } });
  session.on("error", () => {});
  const st = session.request({
    ":method": "POST",
    ":path": CONNECT_PATH,
    "content-type": "application/grpc",
    te: "trailers",
  });
  st.on("error", () => {});
  const out = {
    session,
    st,
    messages: [] as ServerMessage[],
    trailers: null as http2.IncomingHttpHeaders | null,
    closedAt: 0,
  };
  st.on("trailers", (tr) => {
    out.trailers = tr;
  });
  st.on("close", () => {
    out.closedAt = performance.now();
  });
  let pending = Buffer.alloc(0);
  st.on("data", (b: Buffer) => {
    pending = Buffer.concat([pending, b]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      const n = pending.readUInt32BE(1);
      out.messages.push(ServerMessage.decode(pending.subarray(5, 5 + n)));
      pending = pending.subarray(5 + n);
    }
  });
  st.pause();
  return out;
}

/** A gRPC length-prefixed message. */
export function grpcFrame(m: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(m.length, 1);
  return Buffer.concat([head, m]);
}
