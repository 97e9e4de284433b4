/**
 * The service's errors as typed values, and the one place that maps them to the wire: a
 * ServiceError ends a call with a gRPC status; a RejectionKind becomes a Rejection on the stream
 * (the stream stays up).
 */
import {
  type ServiceError as GrpcServiceError,
  Metadata,
  type StatusObject,
  status,
} from "@grpc/grpc-js";
import { RejectionReason } from "../gen/icmpfwd/v1/forwarder.js";

/** Why a call ends with an error status. */
export type ServiceErrorKind =
  | "unsupportedVersion"
  | "invalidHello"
  | "unimplemented"
  | "shuttingDown"
  | "resourceExhausted"
  /** The client did not do what it had to within a time bound (no Hello). */
  | "deadlineExceeded"
  /** A request field is malformed (an address that does not parse, …). */
  | "invalidArgument"
  /** The request is well formed but cannot be carried out here (Ping to an own address). */
  | "failedPrecondition"
  /** No credentials, or wrong ones. */
  | "unauthenticated"
  /** The caller's identity may not do this (a mode, a filter, an RPC). */
  | "permissionDenied"
  /** What the request would add is there already (an address, a route). */
  | "alreadyExists"
  /** What the request names is not there (an address, a route, a NIC). */
  | "notFound"
  /** A side effect outside the process failed (ip(8) refused a kernel route). */
  | "internal";

export interface ServiceError {
  readonly kind: ServiceErrorKind;
  readonly message: string;
}

export function serviceError(kind: ServiceErrorKind, message: string): ServiceError {
  return { kind, message };
}

const STATUS_OF: Record<ServiceErrorKind, status> = {
  unsupportedVersion: status.FAILED_PRECONDITION,
  invalidHello: status.INVALID_ARGUMENT,
  unimplemented: status.UNIMPLEMENTED,
  shuttingDown: status.UNAVAILABLE,
  resourceExhausted: status.RESOURCE_EXHAUSTED,
  deadlineExceeded: status.DEADLINE_EXCEEDED,
  invalidArgument: status.INVALID_ARGUMENT,
  failedPrecondition: status.FAILED_PRECONDITION,
  unauthenticated: status.UNAUTHENTICATED,
  permissionDenied: status.PERMISSION_DENIED,
  alreadyExists: status.ALREADY_EXISTS,
  notFound: status.NOT_FOUND,
  internal: status.INTERNAL,
};

/** Whether a handler's result is a ServiceError (results are plain objects without `kind`). */
export function isServiceError(v: unknown): v is ServiceError {
  return (
    typeof v === "object" &&
    v !== null &&
    typeof (v as { kind?: unknown }).kind === "string" &&
    (v as { kind: string }).kind in STATUS_OF &&
    typeof (v as { message?: unknown }).message === "string"
  );
}

/** The status that ends a call with `e` (what a server interceptor sends). */
export function toGrpcStatus(e: ServiceError): StatusObject {
  return { code: STATUS_OF[e.kind], details: e.message, metadata: new Metadata() };
}

/** The grpc-js error object that ends a call (a handler's) with the status of `e`. */
export function toGrpcError(e: ServiceError): Partial<GrpcServiceError> {
  return toGrpcStatus(e);
}

/** Why one client message (or one verdict in it) was refused. */
export type RejectionKind =
  | "unknownRequest"
  | "expired"
  | "foreignRequest"
  | "alreadyDecided"
  | "invalidAction"
  | "protocolViolation"
  | "syntheticNotAllowed"
  | "noRoute"
  | "rateLimited"
  | "draining"
  | "invalidArgument";

export const REJECTION_KINDS: readonly RejectionKind[] = [
  "unknownRequest",
  "expired",
  "foreignRequest",
  "alreadyDecided",
  "invalidAction",
  "protocolViolation",
  "syntheticNotAllowed",
  "noRoute",
  "rateLimited",
  "draining",
  "invalidArgument",
];

const REASON_OF: Record<RejectionKind, RejectionReason> = {
  unknownRequest: RejectionReason.REJECTION_REASON_UNKNOWN_REQUEST,
  expired: RejectionReason.REJECTION_REASON_EXPIRED,
  foreignRequest: RejectionReason.REJECTION_REASON_FOREIGN_REQUEST,
  alreadyDecided: RejectionReason.REJECTION_REASON_ALREADY_DECIDED,
  invalidAction: RejectionReason.REJECTION_REASON_INVALID_ACTION,
  protocolViolation: RejectionReason.REJECTION_REASON_PROTOCOL_VIOLATION,
  syntheticNotAllowed: RejectionReason.REJECTION_REASON_SYNTHETIC_NOT_ALLOWED,
  noRoute: RejectionReason.REJECTION_REASON_NO_ROUTE,
  rateLimited: RejectionReason.REJECTION_REASON_RATE_LIMITED,
  draining: RejectionReason.REJECTION_REASON_DRAINING,
  invalidArgument: RejectionReason.REJECTION_REASON_INVALID_ARGUMENT,
};

export function rejectionReason(kind: RejectionKind): RejectionReason {
  return REASON_OF[kind];
}
