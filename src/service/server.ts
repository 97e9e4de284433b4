/**
 * The grpc-js server: listens on `host:port` or `unix:/path`, plaintext or TLS (mTLS with a
 * client CA), with server keepalive (dead clients are noticed), a bound on concurrent streams
 * and bounded message sizes. Every EchoForwarder call and reflection call is authenticated here
 * (auth.ts); grpc.health.v1 answers anyone (container probes). Connect goes to a session; the
 * admin RPCs to admin.ts.
 */
import { existsSync, lstatSync, unlinkSync } from "node:fs";
import { connect } from "node:net";
import { createSecureContext, type PeerCertificate, type SecureContextOptions } from "node:tls";
import { fileURLToPath } from "node:url";
import {
  type ChannelOptions,
  type Metadata,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type sendUnaryData,
  type UntypedHandleCall,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
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
  GetStatsRequest,
  GetStatsResponse,
  ListSessionsRequest,
  ListSessionsResponse,
  PingEvent,
  PingRequest,
  WatchStatsRequest,
} from "../gen/icmpfwd/v1/forwarder.js";
import { type Authenticator, authorize, type Principal } from "./auth.js";
import { isServiceError, type ServiceError, serviceError, toGrpcError } from "./errors.js";
import type { ConnectCall } from "./session.js";
import { serviceDefinition } from "./wire.js";

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

/** EchoAdmin (admin.proto): each handler answers with its response or a ServiceError. */
export interface AdminHandlers {
  reload(): Result<ReloadResponse>;
  getDecisionStats(r: GetDecisionStatsRequest): Result<GetDecisionStatsResponse>;
  getNetwork(): Result<GetNetworkResponse>;
  addAddress(r: AddAddressRequest): Result<AddAddressResponse>;
  removeAddress(r: RemoveAddressRequest): Result<RemoveAddressResponse>;
  addRoute(r: AddRouteRequest): Result<AddRouteResponse>;
  removeRoute(r: RemoveRouteRequest): Result<RemoveRouteResponse>;
  setPromiscuous(r: SetPromiscuousRequest): Result<SetPromiscuousResponse>;
}

export interface Handlers {
  connect(call: ConnectCall, principal: Principal): void;
  getStats(): GetStatsResponse;
  watchStats(call: ServerWritableStream<WatchStatsRequest, GetStatsResponse>): void;
  listSessions(): ListSessionsResponse;
  ping(call: ServerWritableStream<PingRequest, PingEvent>): void;
  admin: AdminHandlers;
}

export interface TlsFiles {
  /** PEM certificate chain of the server. */
  cert: Buffer;
  /** PEM private key of the server. */
  key: Buffer;
  /** PEM CA bundle: when set, clients must present a certificate it signed (mTLS). */
  clientCa?: Buffer;
}

export interface ServerSecurity {
  auth: Authenticator;
  tls?: TlsFiles;
}

interface AnyCall {
  metadata: Metadata;
  getAuthContext(): { sslPeerCertificate?: PeerCertificate };
}

function peerCertificate(call: AnyCall): PeerCertificate | undefined {
  try {
    return call.getAuthContext().sslPeerCertificate;
  } catch {
    return undefined;
  }
}

/** Ends a call (of any kind) with a service error. */
function fail(call: unknown, callback: unknown, e: ServiceError): void {
  const err = toGrpcError(e);
  if (typeof callback === "function") (callback as sendUnaryData<unknown>)(err, null);
  else (call as { emit(ev: string, e: unknown): void }).emit("error", err);
}

/**
 * Wraps every handler of an implementation: the call is authenticated (and, with `right`,
 * authorized) before the handler runs; the handler gets the principal.
 */
function guarded(
  auth: Authenticator,
  impl: Record<string, (call: never, callback: never, principal: Principal) => void>,
  right: "admin" | null,
): UntypedServiceImplementation {
  const out: UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(impl)) {
    out[name] = ((call: AnyCall, callback?: unknown) => {
      const p = auth.authenticate(call.metadata, peerCertificate(call));
      if ("kind" in p) return fail(call, callback, p);
      const denied = right === null ? null : authorize(p, right);
      if (denied !== null) return fail(call, callback, denied);
      (handler as (c: unknown, cb: unknown, p: Principal) => void)(call, callback, p);
    }) as UntypedHandleCall;
  }
  return out;
}

function implementation(h: Handlers, auth: Authenticator): UntypedServiceImplementation {
  const admin = guarded(
    auth,
    {
      getStats(
        _call: ServerUnaryCall<GetStatsRequest, GetStatsResponse>,
        done: sendUnaryData<GetStatsResponse>,
      ): void {
        done(null, h.getStats());
      },
      watchStats: h.watchStats,
      listSessions(
        _call: ServerUnaryCall<ListSessionsRequest, ListSessionsResponse>,
        done: sendUnaryData<ListSessionsResponse>,
      ): void {
        done(null, h.listSessions());
      },
      ping: h.ping,
    } as never,
    "admin",
  );
  // Connect is authorized per mode and filter at Hello (session.ts).
  const connectOnly = guarded(
    auth,
    { connect: (call: ConnectCall, _cb: unknown, p: Principal) => h.connect(call, p) } as never,
    null,
  );
  return { ...admin, ...connectOnly };
}

/** A unary handler over a Result-returning function; a thrown error is INTERNAL. */
function unary<Req, Res>(
  fn: (req: Req) => Result<Res>,
): (call: ServerUnaryCall<Req, Res>, done: sendUnaryData<Res>) => void {
  return (call, done) => {
    Promise.resolve()
      .then(() => fn(call.request))
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

function adminImplementation(h: AdminHandlers, auth: Authenticator): UntypedServiceImplementation {
  return guarded(
    auth,
    {
      reload: unary(() => h.reload()),
      getDecisionStats: unary((r: GetDecisionStatsRequest) => h.getDecisionStats(r)),
      getNetwork: unary(() => h.getNetwork()),
      addAddress: unary((r: AddAddressRequest) => h.addAddress(r)),
      removeAddress: unary((r: RemoveAddressRequest) => h.removeAddress(r)),
      addRoute: unary((r: AddRouteRequest) => h.addRoute(r)),
      removeRoute: unary((r: RemoveRouteRequest) => h.removeRoute(r)),
      setPromiscuous: unary((r: SetPromiscuousRequest) => h.setPromiscuous(r)),
    } as never,
    "admin",
  );
}

let reflectionPackage: ReturnType<typeof loadSync> | null = null;

/** grpc.reflection v1 and v1alpha for EchoForwarder and EchoAdmin, behind authentication. */
function addReflection(server: Server, auth: Authenticator): void {
  reflectionPackage ??= loadSync([PROTO_PATH, ADMIN_PROTO_PATH], {
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const reflection = new ReflectionService(reflectionPackage, {
    services: [SERVICE_NAME, ADMIN_SERVICE_NAME],
  });
  reflection.addToServer({
    addService: (def: ServiceDefinition, impl: UntypedServiceImplementation) =>
      server.addService(def, guarded(auth, impl as never, null)),
  });
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

/**
 * TLS certificate rotation: the new key and certificates (checked first: a key that does not
 * match its certificate is refused with the reason) apply to handshakes from now on;
 * connections already up keep theirs, so no session is dropped. A reason string, or null.
 */
export function rotateTls(creds: ServerCredentials, tls: TlsFiles): string | null {
  const options = {
    cert: [tls.cert],
    key: [tls.key],
    ...(tls.clientCa === undefined ? {} : { ca: tls.clientCa }),
  };
  try {
    createSecureContext({ ...options, minVersion: "TLSv1.2" });
  } catch (e) {
    return (e as Error).message;
  }
  const current = creds._getSecureContextOptions() ?? {};
  // grpc-js keeps this protected; it is how its certificate providers rotate (setSecureContext).
  (
    creds as unknown as { updateSecureContextOptions(o: SecureContextOptions): void }
  ).updateSecureContextOptions({ ...current, ...options });
  return null;
}

function credentialsOf(tls: TlsFiles | undefined): ServerCredentials {
  if (tls === undefined) return ServerCredentials.createInsecure();
  const creds = ServerCredentials.createSsl(
    tls.clientCa ?? null,
    [{ cert_chain: tls.cert, private_key: tls.key }],
    tls.clientCa !== undefined,
  );
  // TLS 1.2 at least, whatever Node's default (grpc-js passes these to http2.createSecureServer).
  const o = creds._getConstructorOptions();
  if (o !== null) o.minVersion = "TLSv1.2";
  return creds;
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
): Promise<Listening> {
  const server = new Server({ ...DEFAULT_SERVER_OPTIONS, ...options });
  server.addService(serviceDefinition, implementation(handlers, security.auth));
  server.addService(EchoAdminService, adminImplementation(handlers.admin, security.auth));
  const health = new HealthImplementation({ "": "SERVING", [SERVICE_NAME]: "SERVING" });
  health.addToServer(server);
  addReflection(server, security.auth);
  const unix = listenAt.startsWith("unix:");
  if (unix) await removeStaleSocket(listenAt.slice("unix:".length));
  const creds = credentialsOf(security.tls);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(listenAt, creds, (err, p) => (err === null ? resolve(p) : reject(err)));
  });
  const address = unix ? listenAt : `${listenAt.slice(0, listenAt.lastIndexOf(":"))}:${port}`;
  return { server, credentials: creds, address, health };
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
