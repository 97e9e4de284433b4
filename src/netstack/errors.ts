/**
 * Errors as values (gVisor's tcpip.Error types): callers switch on `kind`; nothing in the packet
 * path throws. The service maps kinds to gRPC status codes in one place.
 */
export type TcpipErrorKind =
  | "noRoute"
  | "networkUnreachable"
  | "badLocalAddress"
  | "unknownNICID"
  | "duplicateAddress"
  | "badAddress"
  | "invalidOptionValue"
  | "messageTooLong"
  | "closedForSend"
  | "wouldBlock"
  | "portInUse"
  | "invalidEndpointState"
  | "unknownProtocol"
  | "linkError"
  | "rateLimited";

export interface TcpipError {
  readonly kind: TcpipErrorKind;
  readonly message: string;
}

export function tcpipError(kind: TcpipErrorKind, message: string): TcpipError {
  return { kind, message };
}

export function isTcpipError(v: unknown): v is TcpipError {
  return (
    typeof v === "object" &&
    v !== null &&
    typeof (v as { kind?: unknown }).kind === "string" &&
    typeof (v as { message?: unknown }).message === "string" &&
    !(v instanceof Uint8Array)
  );
}
