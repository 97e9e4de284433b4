/**
 * A scripted EchoForwarder service on a real grpc-js server (loopback): records every stream and
 * what its client sent, for the TypeScript client's unit tests.
 */
import { Server, ServerCredentials, type ServerDuplexStream } from "@grpc/grpc-js";
import {
  Action,
  type ClientMessage,
  type EchoForwarderServer,
  EchoForwarderService,
  type EchoRequest,
  Family,
  type ServerMessage,
} from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { waitFor } from "../../helpers/netns.js";

const bracket = (host: string, port: number): string =>
  host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;

type Call = ServerDuplexStream<ClientMessage, ServerMessage>;

/** A scripted service: records every stream and what its client sent. */
export class FakeService {
  readonly calls: {
    call: Call;
    received: ClientMessage[];
    ended: boolean;
    authorization: string[];
  }[] = [];
  private server = new Server();
  address = "";
  port = 0;
  /** Answer a Hello with this status instead of a Welcome. */
  refuse: { code: number; details: string } | null = null;

  /** Listens on `host:port` (port 0: any free one); `address` is where it listens. */
  async start(
    host = "127.0.0.1",
    port = 0,
    creds: ServerCredentials = ServerCredentials.createInsecure(),
  ): Promise<void> {
    const impl = {
      connect: (call: Call) => {
        const rec = {
          call,
          received: [] as ClientMessage[],
          ended: false,
          authorization: call.metadata.get("authorization").map(String),
        };
        this.calls.push(rec);
        call.on("data", (m: ClientMessage) => {
          rec.received.push(m);
          if (m.message?.$case === "hello") {
            if (this.refuse !== null) {
              call.emit("error", { code: this.refuse.code, details: this.refuse.details });
              return;
            }
            call.write({
              message: {
                $case: "welcome",
                value: {
                  protocolVersion: 1,
                  sessionId: `s${this.calls.length}`,
                  deadline: undefined,
                  onTimeout: Action.ACTION_FALLTHROUGH,
                  onNoClient: Action.ACTION_FALLTHROUGH,
                  onOverload: Action.ACTION_FALLTHROUGH,
                  onDisconnect: Action.ACTION_FALLTHROUGH,
                  maxInFlight: 1024,
                  maxBatch: 128,
                },
              },
            });
          }
          if (m.message?.$case === "drain") call.end();
        });
        call.on("end", () => {
          rec.ended = true;
          call.end();
        });
        call.on("error", () => {
          rec.ended = true;
        });
        call.on("cancelled", () => {
          rec.ended = true;
        });
      },
    };
    this.server.addService(EchoForwarderService, impl as unknown as EchoForwarderServer);
    const bound = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(bracket(host, port), creds, (e, p) => (e ? reject(e) : resolve(p))),
    );
    this.port = bound;
    this.address = bracket(host, bound);
  }

  /** The nth stream, once its client said Hello. */
  async stream(n = 0) {
    return waitFor(() => (this.calls[n]?.received.length ? this.calls[n] : null), {
      what: `stream ${n}`,
      timeoutMs: 5000,
      intervalMs: 2,
    });
  }

  send(n: number, requests: EchoRequest[]): void {
    this.calls[n].call.write({
      message: { $case: "requests", value: { requests, observerDrops: 0n } },
    });
  }

  /** The verdict batches stream n received. */
  batches(n = 0) {
    return this.calls[n].received.flatMap((m) =>
      m.message?.$case === "verdicts" ? [m.message.value.verdicts] : [],
    );
  }

  /** Streams that are still open (their client has not ended them). */
  open(): number {
    return this.calls.filter((c) => !c.ended).length;
  }

  stop(): void {
    this.server.forceShutdown();
  }
}

/** An IPv4 Echo Request 198.18.0.1 → 198.18.0.2. */
export function echoRequest(id: number, sequence = id): EchoRequest {
  return {
    requestId: BigInt(id),
    family: Family.FAMILY_IPV4,
    nic: 1,
    source: Buffer.from([198, 18, 0, 1]),
    destination: Buffer.from([198, 18, 0, 2]),
    ident: 7,
    sequence,
    ttl: 64,
    tos: 0,
    localAddressTemporary: false,
    payload: Buffer.alloc(0),
    payloadLength: 56,
    receivedAt: undefined,
    deadline: undefined,
    budget: undefined,
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
  };
}
