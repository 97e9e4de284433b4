/**
 * Misbehaving policy clients for the fault-injection runs. Each client talks grpc-js over its
 * own TCP proxy (so it can be killed with a TCP RST), decides most requests at once and some
 * late, twice, or after a short delay, and sends synthetic replies for some consumed requests.
 * When its stream ends it reconnects, until it is finished. Every timer is bounded by the
 * deadline plus a few milliseconds.
 */
import { createServer, connect as netConnect, type Server, type Socket } from "node:net";
import { Client, type ClientDuplexStream, credentials, type StatusObject } from "@grpc/grpc-js";
import {
  Action,
  ClientMessage,
  Mode,
  RejectionReason,
  ServerMessage,
  type Verdict,
} from "../../src/gen/icmpfwd/v1/forwarder.js";

const CONNECT_PATH = "/icmpfwd.v1.EchoForwarder/Connect";

/** A seeded PRNG (mulberry32): runs are repeatable for one seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A TCP proxy in front of the service: kill() resets every connection through it (TCP RST). */
export class TcpProxy {
  private constructor(
    private readonly server: Server,
    readonly address: string,
    private readonly pairs: Set<[Socket, Socket]>,
  ) {}

  static async start(target: string): Promise<TcpProxy> {
    const i = target.lastIndexOf(":");
    const host = target.slice(0, i);
    const port = Number(target.slice(i + 1));
    const pairs = new Set<[Socket, Socket]>();
    const server = createServer((down) => {
      const up = netConnect(port, host);
      const pair: [Socket, Socket] = [down, up];
      pairs.add(pair);
      const drop = (): void => {
        pairs.delete(pair);
        down.destroy();
        up.destroy();
      };
      down.on("error", drop).on("close", drop);
      up.on("error", drop).on("close", drop);
      down.pipe(up);
      up.pipe(down);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const a = server.address();
    if (a === null || typeof a === "string") throw new Error("proxy: no address");
    return new TcpProxy(server, `127.0.0.1:${a.port}`, pairs);
  }

  /** Resets both sides of every connection; returns how many there were. */
  kill(): number {
    const n = this.pairs.size;
    for (const [a, b] of [...this.pairs]) {
      a.resetAndDestroy();
      b.resetAndDestroy();
    }
    this.pairs.clear();
    return n;
  }

  async close(): Promise<void> {
    this.kill();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** What the clients did and saw, summed over all of them. */
export interface ClientTally {
  streams: number;
  verdicts: number;
  lateVerdicts: number;
  duplicateVerdicts: number;
  delayedVerdicts: number;
  flowVerdicts: number;
  syntheticReplies: number;
  /** Rejections by reason name (REJECTION_REASON_…). */
  rejections: Record<string, number>;
  /** Stream ends by gRPC status code. */
  statuses: Record<string, number>;
  /** Fault actions taken by the chaos loop. */
  faults: Record<string, number>;
}

export function emptyTally(): ClientTally {
  return {
    streams: 0,
    verdicts: 0,
    lateVerdicts: 0,
    duplicateVerdicts: 0,
    delayedVerdicts: 0,
    flowVerdicts: 0,
    syntheticReplies: 0,
    rejections: {},
    statuses: {},
    faults: {},
  };
}

export interface PolicyClientOptions {
  name: string;
  proxy: TcpProxy;
  /** Reads its events but never decides (its requests time out). */
  stall?: boolean;
  maxInFlight: number;
  deadlineMs: number;
  rng: () => number;
  tally: ClientTally;
}

const encode = (m: ClientMessage): Buffer => Buffer.from(ClientMessage.encode(m).finish());
const raw = (b: Buffer): Buffer => b;

const ACTIONS = [Action.ACTION_REPLY, Action.ACTION_CONSUME, Action.ACTION_FALLTHROUGH];

export class PolicyClient {
  /** The quiet tail of a run: every event decided at once, none late, twice or stalled. */
  calm = false;
  private client: Client | null = null;
  private call: ClientDuplexStream<Buffer, ServerMessage> | null = null;
  private generation = 0;
  private finishing = false;
  private reopenTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  private ended: (() => void) | null = null;

  constructor(private readonly o: PolicyClientOptions) {}

  get connected(): boolean {
    return this.call !== null;
  }

  open(): void {
    if (this.finishing || this.call !== null) return;
    this.client ??= new Client(this.o.proxy.address, credentials.createInsecure(), {
      // Its own connection: a restart is a new TCP connection, a kill resets only this client.
      "grpc.use_local_subchannel_pool": 1,
    });
    const call = this.client.makeBidiStreamRequest(CONNECT_PATH, raw, (b: Buffer) =>
      ServerMessage.decode(b),
    );
    const g = ++this.generation;
    this.call = call;
    this.o.tally.streams++;
    call.on("data", (m: ServerMessage) => this.receive(g, call, m));
    call.on("status", (s: StatusObject) => this.streamEnded(g, s));
    call.on("error", () => {});
    this.write(call, {
      message: {
        $case: "hello",
        value: {
          protocolVersion: 1,
          clientName: this.o.name,
          mode: Mode.MODE_DECIDE,
          filter: undefined,
          maxInFlight: this.o.maxInFlight,
          payloadBytes: 0,
        },
      },
    });
  }

  // ---- faults ----

  /** TCP RST on the client's connection. */
  kill(): void {
    this.o.proxy.kill();
  }

  /** HTTP/2 RST_STREAM (the call is cancelled); the connection stays. */
  reset(): void {
    this.call?.cancel();
  }

  /** A new channel: the old stream is cancelled, the old connection closed. */
  restart(): void {
    const c = this.client;
    this.client = null;
    this.call?.cancel();
    c?.close();
  }

  /** The client's Drain: no new requests; the stream ends OK once its in-flight are decided. */
  drain(): void {
    if (this.call !== null) this.write(this.call, { message: { $case: "drain", value: {} } });
  }

  /** Half-close: the client says it will send nothing more. */
  halfClose(): void {
    this.call?.end();
  }

  /**
   * Drains and waits (up to `timeoutMs`) for the stream to end, then closes the channel; no
   * reconnect after this.
   */
  async finish(timeoutMs: number): Promise<void> {
    this.finishing = true;
    if (this.reopenTimer !== null) clearTimeout(this.reopenTimer);
    this.reopenTimer = null;
    if (this.call !== null) {
      const done = new Promise<void>((resolve) => {
        this.ended = resolve;
      });
      this.drain();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([done, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
      this.call?.cancel();
    }
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.client?.close();
    this.client = null;
  }

  // ---- the stream ----

  private streamEnded(g: number, s: StatusObject): void {
    const t = this.o.tally;
    t.statuses[s.code] = (t.statuses[s.code] ?? 0) + 1;
    if (g !== this.generation) return;
    this.call = null;
    this.ended?.();
    this.ended = null;
    if (this.finishing) return;
    this.reopenTimer = setTimeout(
      () => {
        this.reopenTimer = null;
        this.open();
      },
      5 + Math.floor(this.o.rng() * 15),
    );
  }

  private write(call: ClientDuplexStream<Buffer, ServerMessage>, m: ClientMessage): void {
    if (call !== this.call || call.writableEnded || call.destroyed) return;
    try {
      call.write(encode(m));
    } catch {
      // The stream ended under us: the message is lost, as on a real network.
    }
  }

  private later(fn: () => void, ms: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private receive(
    g: number,
    call: ClientDuplexStream<Buffer, ServerMessage>,
    m: ServerMessage,
  ): void {
    const msg = m.message;
    const t = this.o.tally;
    if (msg?.$case === "rejection") {
      const name = RejectionReason[msg.value.reason] ?? String(msg.value.reason);
      t.rejections[name] = (t.rejections[name] ?? 0) + 1;
      return;
    }
    if (msg?.$case !== "requests" || (this.o.stall && !this.calm)) return;
    const rng = this.o.rng;
    const now: Verdict[] = [];
    const synthetic: bigint[] = [];
    const send = (vs: Verdict[], synth: bigint[]): void => {
      if (g !== this.generation) return;
      if (vs.length > 0)
        this.write(call, { message: { $case: "verdicts", value: { verdicts: vs } } });
      for (const id of synth)
        this.write(call, {
          message: { $case: "syntheticReply", value: { requestId: id, payload: undefined } },
        });
    };
    for (const e of msg.value.requests) {
      const action = ACTIONS[Math.floor(rng() * 3)];
      const flow = rng() < 0.02;
      const v: Verdict = { requestId: e.requestId, action, applyToFlowMs: flow ? 10 : 0 };
      const synth = action === Action.ACTION_CONSUME && rng() < 0.3;
      const r = rng();
      t.verdicts++;
      if (flow) t.flowVerdicts++;
      if (synth) t.syntheticReplies++;
      if (this.calm) {
        now.push(v);
        if (synth) synthetic.push(e.requestId);
      } else if (r < 0.03) {
        // Late: after the deadline (the service answers EXPIRED).
        t.lateVerdicts++;
        this.later(() => send([v], synth ? [e.requestId] : []), this.o.deadlineMs + 20);
      } else if (r < 0.06) {
        // Twice (the second is ALREADY_DECIDED).
        t.duplicateVerdicts++;
        now.push(v, v);
        if (synth) synthetic.push(e.requestId);
      } else if (r < 0.2) {
        t.delayedVerdicts++;
        this.later(
          () => send([v], synth ? [e.requestId] : []),
          Math.floor((rng() * this.o.deadlineMs) / 2),
        );
      } else {
        now.push(v);
        if (synth) synthetic.push(e.requestId);
      }
    }
    send(now, synthetic);
  }
}
