/**
 * What telemetry records of each gRPC call the server takes (Connect, the admin RPCs, health,
 * reflection): one trace per call, from its metadata to its status, started by a server
 * interceptor. The service only calls these hooks; src/telemetry implements them with
 * OpenTelemetry. No context is made active around the handlers: a global AsyncLocalStorage
 * context manager cost a fifth of the decision rate for the sake of the few calls traced.
 */
import {
  type Metadata,
  ResponderBuilder,
  ServerInterceptingCall,
  type ServerInterceptor,
  ServerListenerBuilder,
  status as Status,
} from "@grpc/grpc-js";

/** A sampled call's ids, for the log lines it causes. */
export interface TraceIds {
  readonly traceId: string;
  readonly spanId: string;
}

export interface CallTrace {
  /** What a Connect stream's decisions link to (opaque to the service). */
  readonly link: unknown;
  /** Its ids when it is sampled (the audit lines carry them); null otherwise. */
  readonly ids: TraceIds | null;
  /** The call ended with `code` (sent, or CANCELLED when the client went first). */
  end(code: Status, details: string): void;
}

export interface CallTelemetry {
  /**
   * A call to `path` ("/icmpfwd.v1.EchoAdmin/AddRoute") arrived; `header` reads its metadata
   * (a `traceparent` there makes the call's span a child of the caller's).
   */
  callStarted(path: string, header: (name: string) => string | undefined): CallTrace;
}

/**
 * The calls' traces as a grpc-js server interceptor, innermost so that it sees every status,
 * also the refusals of the authentication interceptor outside it. A handler finds its call's
 * trace by the call's metadata object, which grpc-js hands on as `call.metadata`.
 */
export class CallTracing {
  private readonly traces = new WeakMap<Metadata, CallTrace>();

  constructor(private readonly telemetry: CallTelemetry) {}

  readonly interceptor: ServerInterceptor = (method, call) => {
    let trace: CallTrace | null = null;
    const end = (code: Status, details: string): void => {
      const t = trace;
      trace = null;
      t?.end(code, details);
    };
    const listener = new ServerListenerBuilder()
      .withOnReceiveMetadata((metadata: Metadata, next: (m: Metadata) => void) => {
        trace = this.telemetry.callStarted(method.path, (name) => {
          const v = metadata.get(name)[0];
          return typeof v === "string" ? v : undefined;
        });
        this.traces.set(metadata, trace);
        next(metadata);
      })
      .withOnCancel(() => end(Status.CANCELLED, "cancelled by the client"))
      .build();
    return new ServerInterceptingCall(
      call,
      new ResponderBuilder()
        .withStart((next) => next(listener))
        .withSendStatus((status, next) => {
          end(status.code, status.details);
          next(status);
        })
        .build(),
    );
  };

  /** The trace of the call whose metadata this is; null when it has none. */
  traceOf(metadata: Metadata): CallTrace | null {
    return this.traces.get(metadata) ?? null;
  }
}
