/**
 * The connections the server itself ends — a GOAWAY it sends, a keepalive ping left
 * unanswered, a reset at shutdown — told to the audit log. grpc-js does these on its own and
 * says nothing above its trace output, so the HTTP/2 session's `goaway`, `close` and `destroy`
 * are wrapped where grpc-js calls them; a connection the client ends is not a cut.
 */
import { constants as http2Constants, type ServerHttp2Session } from "node:http2";
import type { Server } from "@grpc/grpc-js";
import type { AuditLog } from "./audit.js";
import { grpcListeners } from "./grpc-listeners.js";

/** HTTP/2 error codes by value (RFC 9113 §7), for log lines a reader can act on. */
const HTTP2_CODE_NAMES: readonly string[] = [
  "NO_ERROR",
  "PROTOCOL_ERROR",
  "INTERNAL_ERROR",
  "FLOW_CONTROL_ERROR",
  "SETTINGS_TIMEOUT",
  "STREAM_CLOSED",
  "FRAME_SIZE_ERROR",
  "REFUSED_STREAM",
  "CANCEL",
  "COMPRESSION_ERROR",
  "CONNECT_ERROR",
  "ENHANCE_YOUR_CALM",
  "INADEQUATE_SECURITY",
  "HTTP_1_1_REQUIRED",
];

export function http2CodeName(code: number): string {
  return HTTP2_CODE_NAMES[code] ?? `code ${code}`;
}

/**
 * Reports every connection of `server`'s listeners that the server cuts. Call once the server
 * is bound. Returns false when grpc-js's servers could not be found (nothing will be reported).
 */
export function auditConnectionCuts(
  server: Server,
  audit: AuditLog,
  keepaliveTimeoutMs: number,
): boolean {
  // Where grpc-js's servers cannot be found, nothing is logged rather than anything breaking.
  const servers = grpcListeners(server) ?? [];
  for (const s of servers) s.on("session", (session) => watch(session, audit, keepaliveTimeoutMs));
  return servers.length > 0;
}

function watch(session: ServerHttp2Session, audit: AuditLog, keepaliveTimeoutMs: number): void {
  const socket = session.socket;
  const peer =
    socket?.remoteAddress === undefined ? "unix" : `${socket.remoteAddress}:${socket.remotePort}`;
  const who = { identity: "connection", peer };
  // Once the client has said GOAWAY, or the session is already going, an end is not a cut.
  let ending = false;
  session.once("goaway", () => {
    ending = true;
  });
  session.once("close", () => {
    ending = true;
  });
  const cut = (reason: string): void => {
    if (ending || session.destroyed) return;
    ending = true;
    audit.disconnected(who, reason);
  };

  const goaway = session.goaway.bind(session);
  session.goaway = (code?: number, lastStreamId?: number, data?: NodeJS.ArrayBufferView) => {
    const detail =
      data === undefined || data.byteLength === 0
        ? ""
        : ` (${Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("latin1")})`;
    cut(`GOAWAY ${http2CodeName(code ?? http2Constants.NGHTTP2_NO_ERROR)} sent${detail}`);
    goaway(code, lastStreamId, data);
  };
  const close = session.close.bind(session);
  session.close = (callback?: () => void) => {
    // grpc-js closes gracefully (GOAWAY NO_ERROR, then waits for open calls) when it shuts down.
    cut("GOAWAY NO_ERROR sent: the server is shutting down");
    close(callback);
  };
  const destroy = session.destroy.bind(session);
  session.destroy = (error?: Error | number, code?: number) => {
    // grpc-js calls destroy() bare when a keepalive ping went unanswered, destroy(CANCEL) when a
    // shutdown's grace ran out (Node accepts the code as the first argument).
    const reason =
      typeof error === "number"
        ? `connection reset (${http2CodeName(error)}): the shutdown grace ran out`
        : error instanceof Error
          ? `connection reset: ${error.message}`
          : code !== undefined
            ? `connection reset (${http2CodeName(code)})`
            : `connection cut: no answer to the keepalive ping within ${keepaliveTimeoutMs} ms`;
    cut(reason);
    (destroy as (e?: Error | number, c?: number) => void)(error, code);
  };
}
