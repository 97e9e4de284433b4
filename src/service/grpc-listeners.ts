/**
 * grpc-js's listening HTTP/2 servers, which it keeps in a private map and offers no option or
 * hook for: the connection cap and the audit of connections the server cuts both reach them
 * here, after bindAsync. Null when the map has moved (a grpc-js upgrade): each caller decides
 * whether that is fatal.
 */
import type { Http2Server } from "node:http2";
import type { Server } from "@grpc/grpc-js";

export function grpcListeners(server: Server): Http2Server[] | null {
  const map = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(map instanceof Map)) return null;
  return [...map.keys()].filter(
    (s): s is Http2Server => typeof (s as { on?: unknown })?.on === "function",
  );
}
