/**
 * grpc.reflection v1 and v1alpha, built on the first reflection call. Building it parses the
 * protos with protobufjs (@grpc/proto-loader) and holds their descriptors: 9–11 MB of RSS that
 * a service nobody runs grpcurl against never needs. So the two ServerReflectionInfo methods
 * are registered with pass-through (de)serializers, and the first call loads @grpc/reflection,
 * builds it, and hands each call to its handler through a small adapter that decodes requests
 * and encodes responses with the reflection package's own definition.
 */
import { EventEmitter } from "node:events";
import type {
  MethodDefinition,
  Server,
  ServerDuplexStream,
  ServiceDefinition,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";

/** Reflection's two versions: each has one bidi method. */
const REFLECTION_SERVICES = [
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
] as const;
const METHOD = "ServerReflectionInfo";

type AnyMethod = MethodDefinition<unknown, unknown>;
type Handler = (call: EventEmitter & { write(m: unknown): boolean; end(): void }) => void;
interface Built {
  definition: AnyMethod;
  handler: Handler;
}

const passThrough = (b: Buffer): Buffer => b;

/** What the protos are and which services reflection lists. */
export interface ReflectionSource {
  protoPaths: string[];
  services: string[];
}

async function build(source: ReflectionSource): Promise<Map<string, Built>> {
  const [{ loadSync }, { ReflectionService }] = await Promise.all([
    import("@grpc/proto-loader"),
    import("@grpc/reflection"),
  ]);
  const protos = loadSync(source.protoPaths, {
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const reflection = new ReflectionService(protos, { services: source.services });
  const byPath = new Map<string, Built>();
  // Through a function: the reflection package is typed against its own copy of grpc-js.
  reflection.addToServer({
    addService: (def: ServiceDefinition, impl: UntypedServiceImplementation) => {
      const definition = def[METHOD] as AnyMethod;
      byPath.set(definition.path, { definition, handler: impl[METHOD] as unknown as Handler });
    },
  });
  return byPath;
}

/** Adds the reflection services to `server`; they are built on their first call. */
export function addReflection(server: Server, source: ReflectionSource): void {
  let built: Promise<Map<string, Built>> | null = null;
  for (const service of REFLECTION_SERVICES) {
    const path = `/${service}/${METHOD}`;
    const definition: ServiceDefinition = {
      [METHOD]: {
        path,
        requestStream: true,
        responseStream: true,
        requestSerialize: passThrough,
        requestDeserialize: passThrough,
        responseSerialize: passThrough,
        responseDeserialize: passThrough,
      },
    };
    server.addService(definition, {
      [METHOD]: (call: ServerDuplexStream<Buffer, Buffer>) => {
        built ??= build(source);
        built
          .then((byPath) => {
            const b = byPath.get(path);
            if (b === undefined) throw new Error(`reflection has no ${path}`);
            // Until now nothing read the call: what the client sent is waiting in its buffer.
            const inner = Object.assign(new EventEmitter(), {
              write: (m: unknown): boolean => call.write(b.definition.responseSerialize(m)),
              end: (): void => {
                call.end();
              },
            });
            call.on("data", (raw: Buffer) =>
              inner.emit("data", b.definition.requestDeserialize(raw)),
            );
            call.on("end", () => inner.emit("end"));
            call.on("error", (e: Error) => inner.emit("error", e));
            b.handler(inner);
          })
          .catch((e: unknown) => {
            call.destroy(e instanceof Error ? e : new Error(String(e)));
          });
      },
    });
  }
}
