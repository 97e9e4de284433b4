/**
 * The grpc-js server: listens on `host:port` or `unix:/path`, plaintext or TLS (mTLS with a
 * client CA), with server keepalive (dead clients are noticed), a bound on concurrent streams
 * and bounded message sizes. Every EchoForwarder, EchoAdmin and reflection call is authenticated
 * (and the admin RPCs authorized) by a server interceptor before any handler runs (auth.ts);
 * grpc.health.v1 answers anyone (container probes). Connect goes to a session, with the caller's
 * principal; the admin RPCs to admin.ts.
 */
import { chmodSync, existsSync, lstatSync, unlinkSync } from "node:fs";
import { createRequire } from "node:module";
import { connect, createServer, type Server as NetServer, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { Server as TlsServer } from "node:tls";
import { fileURLToPath } from "node:url";
import {
  type ChannelOptions,
  type Metadata,
  ResponderBuilder,
  Server,
  type ServerCredentials,
  ServerInterceptingCall,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
  ServerListenerBuilder,
  type ServerUnaryCall,
  type ServerWritableStream,
  status as Status,
  type sendUnaryData,
  type UntypedHandleCall,
} from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import {
  type AddAddressRequest,
  type AddAddressResponse,
  type AddRouteRequest,
  type AddRouteResponse,
  EchoAdminService,
  type GetDecisionStatsRequest,
  type GetDecisionStatsResponse,
  type GetNetworkResponse,
  type ReloadResponse,
  type RemoveAddressRequest,
  type RemoveAddressResponse,
  type RemoveRouteRequest,
  type RemoveRouteResponse,
  type SetPromiscuousRequest,
  type SetPromiscuousResponse,
} from "../gen/icmpfwd/v1/admin.js";
import type {
  GetStatsResponse,
  ListSessionsResponse,
  PingEvent,
  PingRequest,
  WatchStatsRequest,
} from "../gen/icmpfwd/v1/forwarder.js";
import { type AuditLog, type Caller, withTrace } from "./audit.js";
import { type Authenticator, authorize, type Principal, type Right } from "./auth.js";
import { type CallTelemetry, type CallTrace, CallTracing } from "./call-telemetry.js";
import { auditConnectionCuts } from "./connection-cuts.js";
import {
  isServiceError,
  type ServiceError,
  serviceError,
  toGrpcError,
  toGrpcStatus,
} from "./errors.js";
import { grpcListeners } from "./grpc-listeners.js";
import { addReflection } from "./reflection.js";
import type { ConnectCall } from "./session.js";
import { serverCredentials, type TlsFiles } from "./tls.js";
import { serviceDefinition } from "./wire.js";

export { rotateTls, type TlsFiles } from "./tls.js";

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
  // Nothing reads channelz; its per-connection records cost ~1.6 KB each (16 MB at 10,000).
  "grpc.enable_channelz": 0,
};

/**
 * A server option (a ChannelOptions key of ours, not passed to grpc-js): the connections each
 * listening socket holds at once. One more is closed right after accept, and its peer
 * reported to the audit log as refused (rate-limited there).
 */
export const MAX_CONNECTIONS_OPTION = "icmpfwd.max_connections";

/** The service name health and reflection report. */
export const SERVICE_NAME = "icmpfwd.v1.EchoForwarder";
/** The operator service (proto/icmpfwd/v1/admin.proto). */
export const ADMIN_SERVICE_NAME = "icmpfwd.v1.EchoAdmin";

/** The proto the reflection service describes (shipped in the package: `files` has proto/). */
export const PROTO_PATH = fileURLToPath(
  new URL("../../proto/icmpfwd/v1/forwarder.proto", import.meta.url),
);
export const ADMIN_PROTO_PATH = fileURLToPath(
  new URL("../../proto/icmpfwd/v1/admin.proto", import.meta.url),
);

type Result<T> = T | ServiceError | Promise<T | ServiceError>;

/**
 * EchoAdmin (admin.proto): each handler answers with its response or a ServiceError; those
 * that change something are told who asked (for the audit log).
 */
export interface AdminHandlers {
  reload(who: Caller): Result<ReloadResponse>;
  getDecisionStats(r: GetDecisionStatsRequest): Result<GetDecisionStatsResponse>;
  getNetwork(): Result<GetNetworkResponse>;
  addAddress(r: AddAddressRequest, who: Caller): Result<AddAddressResponse>;
  removeAddress(r: RemoveAddressRequest, who: Caller): Result<RemoveAddressResponse>;
  addRoute(r: AddRouteRequest, who: Caller): Result<AddRouteResponse>;
  removeRoute(r: RemoveRouteRequest, who: Caller): Result<RemoveRouteResponse>;
  setPromiscuous(r: SetPromiscuousRequest, who: Caller): Result<SetPromiscuousResponse>;
}

export interface Handlers {
  /** `trace`: the Connect call's own trace (its decisions link to it); null when untraced. */
  connect(call: ConnectCall, principal: Principal, trace: CallTrace | null): void;
  getStats(): GetStatsResponse;
  watchStats(call: ServerWritableStream<WatchStatsRequest, GetStatsResponse>): void;
  listSessions(): ListSessionsResponse;
  ping(call: ServerWritableStream<PingRequest, PingEvent>): void;
  admin: AdminHandlers;
}

export interface ServerSecurity {
  auth: Authenticator;
  tls?: TlsFiles;
  /** Told of every refused call. */
  audit: AuditLog;
}

/** Who made an admitted call, with its trace's ids when it has a sampled one. */
type WhoCalled = (call: { metadata: Metadata; getPeer(): string }) => Caller;

/** What a method needs of its caller: nothing, an identity, or an identity with a right. */
type Access = "open" | "authenticated" | Right;

/** Health answers anyone (container probes carry no credentials). */
const OPEN_PREFIX = "/grpc.health.v1.Health/";

/**
 * The right each method needs beyond authentication: the admin RPCs need "admin"; Connect is
 * authorized per mode and filter at Hello (session.ts); reflection needs an identity only.
 */
const ACCESS: ReadonlyMap<string, Access> = new Map<string, Access>([
  ...Object.values(EchoAdminService).map((m): [string, Access] => [m.path, "admin"]),
  ...Object.values(serviceDefinition).map((m): [string, Access] => [
    m.path,
    m.path === serviceDefinition.connect.path ? "authenticated" : "admin",
  ]),
]);

function accessOf(path: string): Access {
  if (path.startsWith(OPEN_PREFIX)) return "open";
  return ACCESS.get(path) ?? "authenticated";
}

/**
 * Authentication and authorization as a grpc-js server interceptor: a refused call ends with
 * its status as soon as its metadata arrives, and no handler runs. The principal of an admitted
 * call is kept against the call's metadata object, which grpc-js hands on to the handler as
 * `call.metadata` (keyed weakly: it goes with the call).
 */
class CallGuard {
  private readonly principals = new WeakMap<Metadata, Principal>();

  constructor(
    private readonly auth: Authenticator,
    private readonly audit: AuditLog,
  ) {}

  readonly interceptor: ServerInterceptor = (method, call) => {
    const access = accessOf(method.path);
    if (access === "open") return new ServerInterceptingCall(call);
    const listener = new ServerListenerBuilder()
      .withOnReceiveMetadata((metadata: Metadata, next: (m: Metadata) => void) => {
        const p = this.admit(metadata, call, access);
        if (isServiceError(p)) {
          const s = toGrpcStatus(p);
          this.audit.refused(call.getPeer(), method.path, Status[s.code], p.message);
          call.sendStatus(s);
          return;
        }
        this.principals.set(metadata, p);
        next(metadata);
      })
      .build();
    return new ServerInterceptingCall(
      call,
      new ResponderBuilder().withStart((next) => next(listener)).build(),
    );
  };

  /** Who made an admitted call (for the audit log). */
  callerOf(call: { metadata: Metadata; getPeer(): string }): Caller {
    const p = this.principals.get(call.metadata);
    return { identity: p?.identity ?? "", peer: call.getPeer() };
  }

  /** The principal the interceptor admitted this call's metadata with. */
  principalOf(metadata: Metadata): Principal | ServiceError {
    return (
      this.principals.get(metadata) ??
      serviceError("internal", "the call reached its handler without being authenticated")
    );
  }

  private admit(
    metadata: Metadata,
    call: ServerInterceptingCallInterface,
    access: Exclude<Access, "open">,
  ): Principal | ServiceError {
    const p = this.auth.authenticate(
      metadata,
      call.getAuthContext().sslPeerCertificate,
      call.getConnectionInfo(),
    );
    if (isServiceError(p) || access === "authenticated") return p;
    return authorize(p, access) ?? p;
  }
}

/** A handler for each EchoForwarder method; authentication has already happened (CallGuard). */
function implementation(
  h: Handlers,
  guard: CallGuard,
  tracing: CallTracing | null,
): Record<keyof typeof serviceDefinition, UntypedHandleCall> {
  return {
    connect(call: ConnectCall): void {
      const p = guard.principalOf(call.metadata);
      if (isServiceError(p)) call.emit("error", toGrpcError(p));
      else h.connect(call, p, tracing?.traceOf(call.metadata) ?? null);
    },
    getStats: answer(() => h.getStats()),
    watchStats: h.watchStats,
    listSessions: answer(() => h.listSessions()),
    ping: h.ping,
  };
}

/** A unary handler that answers at once with `fn`'s response (it cannot fail). */
function answer<Res>(fn: () => Res): (call: unknown, done: sendUnaryData<Res>) => void {
  return (_call, done) => done(null, fn());
}

/** A unary handler over a Result-returning function; a thrown error is INTERNAL. */
function unary<Req, Res>(
  fn: (req: Req, call: ServerUnaryCall<Req, Res>) => Result<Res>,
): (call: ServerUnaryCall<Req, Res>, done: sendUnaryData<Res>) => void {
  return (call, done) => {
    Promise.resolve()
      .then(() => fn(call.request, call))
      .then(
        (r) => (isServiceError(r) ? done(toGrpcError(r), null) : done(null, r)),
        (e: unknown) =>
          done(
            toGrpcError(serviceError("internal", e instanceof Error ? e.message : String(e))),
            null,
          ),
      );
  };
}

function adminImplementation(
  h: AdminHandlers,
  who: WhoCalled,
): Record<keyof typeof EchoAdminService, UntypedHandleCall> {
  return {
    reload: unary((_r, call) => h.reload(who(call))),
    getDecisionStats: unary((r: GetDecisionStatsRequest) => h.getDecisionStats(r)),
    getNetwork: unary(() => h.getNetwork()),
    addAddress: unary((r: AddAddressRequest, call) => h.addAddress(r, who(call))),
    removeAddress: unary((r: RemoveAddressRequest, call) => h.removeAddress(r, who(call))),
    addRoute: unary((r: AddRouteRequest, call) => h.addRoute(r, who(call))),
    removeRoute: unary((r: RemoveRouteRequest, call) => h.removeRoute(r, who(call))),
    setPromiscuous: unary((r: SetPromiscuousRequest, call) => h.setPromiscuous(r, who(call))),
  };
}

/** grpc-health-check's copy of grpc/health/v1/health.proto (it ships proto/), for reflection. */
const HEALTH_PROTO_PATH = join(
  dirname(createRequire(import.meta.url).resolve("grpc-health-check/package.json")),
  "proto/health/v1/health.proto",
);
const HEALTH_SERVICE_NAME = "grpc.health.v1.Health";

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
  /** The credentials the server listens with (TLS rotation updates them: rotateTls). */
  credentials: ServerCredentials;
  /** What the server listens on: `host:port` with the bound port, or `unix:/path`. */
  address: string;
  health: HealthImplementation;
}

/** Starts the server on `listen` ("127.0.0.1:50051", "[::1]:0", "unix:/run/icmpfwd.sock"). */
export async function listen(
  listenAt: string,
  handlers: Handlers,
  security: ServerSecurity,
  options: ChannelOptions = {},
  calls: CallTelemetry | null = null,
): Promise<Listening> {
  const guard = new CallGuard(security.auth, security.audit);
  const tracing = calls === null ? null : new CallTracing(calls);
  const { [MAX_CONNECTIONS_OPTION]: maxConnections, ...grpcOptions } = options;
  const server = new Server({
    ...DEFAULT_SERVER_OPTIONS,
    ...grpcOptions,
    // The first wraps the call first: tracing sees the guard's refusals go out.
    interceptors: tracing === null ? [guard.interceptor] : [tracing.interceptor, guard.interceptor],
  });
  const who: WhoCalled = (call) =>
    withTrace(guard.callerOf(call), tracing?.traceOf(call.metadata)?.ids ?? null);
  server.addService(serviceDefinition, implementation(handlers, guard, tracing));
  server.addService(EchoAdminService, adminImplementation(handlers.admin, who));
  const health = new HealthImplementation({ "": "SERVING", [SERVICE_NAME]: "SERVING" });
  health.addToServer(server);
  // grpc.reflection v1 and v1alpha (authenticated: CallGuard), built on its first call.
  addReflection(server, {
    protoPaths: [PROTO_PATH, ADMIN_PROTO_PATH, HEALTH_PROTO_PATH],
    services: [SERVICE_NAME, ADMIN_SERVICE_NAME, HEALTH_SERVICE_NAME],
  });
  const unix = listenAt.startsWith("unix:");
  const path = listenAt.slice("unix:".length);
  if (unix) await removeStaleSocket(path);
  const creds = serverCredentials(security.tls);
  // A unix socket is created 0600: only its owner (and root) can connect, which is what makes
  // callers without credentials on it trustworthy (auth.ts). The umask covers the moment
  // between bind(2) and chmod(2).
  const umask = unix ? process.umask(0o177) : null;
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(listenAt, creds, (err, p) => (err === null ? resolve(p) : reject(err)));
    });
  } catch (e) {
    throw new Error(await whyNotListening(listenAt, (e as Error).message));
  } finally {
    if (umask !== null) process.umask(umask);
  }
  if (typeof maxConnections === "number") guardConnections(server, maxConnections, security.audit);
  if (unix) chmodSync(path, 0o600);
  const keepaliveTimeoutMs = Number(
    options["grpc.keepalive_timeout_ms"] ?? DEFAULT_SERVER_OPTIONS["grpc.keepalive_timeout_ms"],
  );
  auditConnectionCuts(server, security.audit, keepaliveTimeoutMs);
  const address = unix ? listenAt : `${listenAt.slice(0, listenAt.lastIndexOf(":"))}:${port}`;
  return { server, credentials: creds, address, health };
}

/**
 * `--health-listen`: a plaintext listener with grpc.health.v1 only, for probes that cannot
 * present a client certificate when the main listener requires one. It tells nothing but the
 * serving status, so it needs no credentials.
 */
export async function listenHealth(
  listenAt: string,
  health: HealthImplementation,
): Promise<{ server: Server; address: string }> {
  const server = new Server({ "grpc.max_concurrent_streams": 10 });
  health.addToServer(server);
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(listenAt, serverCredentials(undefined), (err, p) =>
        err === null ? resolve(p) : reject(err),
      ),
    );
  } catch (e) {
    throw new Error(await whyNotListening(listenAt, (e as Error).message));
  }
  return { server, address: `${listenAt.slice(0, listenAt.lastIndexOf(":"))}:${port}` };
}

/**
 * A connection that has sent nothing costs no HTTP/2 session: the listener's own "connection"
 * handling (the session, ~10 KB of nghttp2 buffers each) starts at its first bytes, which a
 * gRPC client sends at once. Measured: 10,000 idle connections +205 MB RSS before, against +37
 * MB of plain sockets. One that sends nothing is closed after this long (grpc-js's keepalive,
 * which would close it otherwise, runs only on a session).
 */
const FIRST_BYTES_TIMEOUT_MS = 30_000;

/**
 * The listening sockets grpc-js keeps in a private map (it has no option for either): each
 * holds at most `max` connections (Node's net.Server closes one more right after accept and
 * emits "drop"), and a plaintext one defers a connection's HTTP/2 session to its first bytes.
 * A grpc-js without that map fails start-up rather than serve without the cap.
 */
function guardConnections(server: Server, max: number, audit: AuditLog): void {
  const listeners = grpcListeners(server);
  if (listeners === null) throw new Error("cannot apply --max-connections to grpc-js");
  for (const l of listeners) {
    l.maxConnections = max;
    l.on("drop", (d?: { remoteAddress?: string; remotePort?: number }) => {
      const peer = d?.remoteAddress === undefined ? "unix" : `${d.remoteAddress}:${d.remotePort}`;
      audit.refused(peer, "(connection)", "RESOURCE_EXHAUSTED", `--max-connections ${max} reached`);
    });
    // TLS reads the socket's handle itself: its handshake starts at once, as before.
    if (!(l instanceof TlsServer)) deferSessions(l);
  }
}

function deferSessions(l: NetServer): void {
  const own = l.listeners("connection") as ((s: Socket) => void)[];
  l.removeAllListeners("connection");
  l.on("connection", (socket: Socket) => {
    // Until the session has it, a reset must not be an unhandled 'error' (it would end us).
    const onError = (): void => {
      socket.destroy();
    };
    socket.on("error", onError);
    // A timer of our own, dropped once used: socket.setTimeout() would keep its cleared timer,
    // a bound function and a 'timeout' listener on every connection for its whole life.
    const silent = setTimeout(() => socket.destroy(), FIRST_BYTES_TIMEOUT_MS);
    silent.unref();
    const onClose = (): void => clearTimeout(silent);
    socket.once("close", onClose);
    // Node's HTTP/2 session takes over bytes already buffered on the socket.
    socket.once("readable", () => {
      clearTimeout(silent);
      socket.off("close", onClose);
      socket.off("error", onError);
      for (const f of own) f.call(l, socket);
    });
  });
}

/**
 * grpc-js says only "No address added out of total 1 resolved": the same bind with node:net
 * names the errno (EADDRINUSE, EACCES, ENOENT, EADDRNOTAVAIL…). Falls back to grpc-js's text.
 */
async function whyNotListening(listenAt: string, grpcMessage: string): Promise<string> {
  const probe = createServer();
  const unix = listenAt.startsWith("unix:");
  const target = unix
    ? { path: listenAt.slice("unix:".length) }
    : {
        host: listenAt.slice(0, listenAt.lastIndexOf(":")).replace(/^\[|\]$/g, ""),
        port: Number(listenAt.slice(listenAt.lastIndexOf(":") + 1)),
      };
  const code = await new Promise<string | null>((resolve) => {
    probe.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? null));
    probe.listen(target, () => probe.close(() => resolve(null)));
  });
  if (code === null) return grpcMessage;
  const hint: Record<string, string> = {
    EADDRINUSE: "address already in use",
    EACCES: "permission denied",
    ENOENT: "no such directory",
    EADDRNOTAVAIL: "no such local address",
    ENOTFOUND: "host not found",
  };
  return `${hint[code] ?? "cannot listen"} (${code})`;
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
