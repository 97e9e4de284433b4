/**
 * The grpc-js server: listens on `host:port` or `unix:/path`, with server keepalive (dead
 * clients are noticed), a bound on concurrent streams and bounded message sizes. Connect goes to
 * a session; GetStats answers from the counters; the RPCs of the next service release answer
 * UNIMPLEMENTED.
 */
import { existsSync, lstatSync, unlinkSync } from "node:fs";
import { connect } from "node:net";
import {
  type ChannelOptions,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import type {
  GetStatsRequest,
  GetStatsResponse,
  ListSessionsRequest,
  ListSessionsResponse,
  PingEvent,
  PingRequest,
  WatchStatsRequest,
} from "../gen/icmpfwd/v1/forwarder.js";
import { serviceError, toGrpcError } from "./errors.js";
import type { ConnectCall } from "./session.js";
import { protoTimeOfMs, serviceDefinition } from "./wire.js";

export const DEFAULT_SERVER_OPTIONS: ChannelOptions = {
  // Ping idle connections every 20 s; no answer within 10 s ends them (and their sessions).
  "grpc.keepalive_time_ms": 20_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.keepalive_permit_without_calls": 1,
  // Clients may ping as often as every 10 s without being sent GOAWAY.
  "grpc.http2.min_ping_interval_without_data_ms": 10_000,
  "grpc.max_concurrent_streams": 100,
  // A verdict batch is ~10 bytes a verdict; 1 MiB is far beyond any sane batch.
  "grpc.max_receive_message_length": 1 << 20,
  // Event batches are cut at 1 MiB; one event with a full 64 KiB payload still fits.
  "grpc.max_send_message_length": 4 << 20,
};

export interface Handlers {
  connect(call: ConnectCall): void;
  stats(): { counters: Record<string, number>; gauges: Record<string, number> };
}

function unimplemented(rpc: string) {
  return toGrpcError(
    serviceError("unimplemented", `${rpc} is not implemented by this server version`),
  );
}

function implementation(h: Handlers): UntypedServiceImplementation {
  return {
    connect: h.connect,
    getStats(
      _call: ServerUnaryCall<GetStatsRequest, GetStatsResponse>,
      done: sendUnaryData<GetStatsResponse>,
    ): void {
      const s = h.stats();
      const counters: Record<string, bigint> = {};
      for (const [k, v] of Object.entries(s.counters)) counters[k] = BigInt(Math.max(0, v));
      const gauges: Record<string, bigint> = {};
      for (const [k, v] of Object.entries(s.gauges)) gauges[k] = BigInt(Math.trunc(v));
      done(null, { takenAt: protoTimeOfMs(Date.now()), counters, gauges });
    },
    watchStats(call: ServerWritableStream<WatchStatsRequest, GetStatsResponse>): void {
      call.emit("error", unimplemented("WatchStats"));
    },
    listSessions(
      _call: ServerUnaryCall<ListSessionsRequest, ListSessionsResponse>,
      done: sendUnaryData<ListSessionsResponse>,
    ): void {
      done(unimplemented("ListSessions"));
    },
    ping(call: ServerWritableStream<PingRequest, PingEvent>): void {
      call.emit("error", unimplemented("Ping"));
    },
  };
}

/** Removes a unix socket file left by a process that is gone (nothing accepts on it). */
async function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path) || !lstatSync(path).isSocket()) return;
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
  if (!live) unlinkSync(path);
}

export interface Listening {
  server: Server;
  /** What the server listens on: `host:port` with the bound port, or `unix:/path`. */
  address: string;
}

/** Starts the server on `listen` ("127.0.0.1:50051", "[::1]:0", "unix:/run/icmpfwd.sock"). */
export async function listen(
  listenAt: string,
  handlers: Handlers,
  options: ChannelOptions = {},
): Promise<Listening> {
  const server = new Server({ ...DEFAULT_SERVER_OPTIONS, ...options });
  server.addService(serviceDefinition, implementation(handlers));
  const unix = listenAt.startsWith("unix:");
  if (unix) await removeStaleSocket(listenAt.slice("unix:".length));
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(listenAt, ServerCredentials.createInsecure(), (err, p) =>
      err === null ? resolve(p) : reject(err),
    );
  });
  const address = unix ? listenAt : `${listenAt.slice(0, listenAt.lastIndexOf(":"))}:${port}`;
  return { server, address };
}

/** Stops accepting and waits for calls to end; after `graceMs`, cuts what is left. */
export async function shutdown(server: Server, graceMs: number): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
