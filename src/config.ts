/**
 * One validated configuration for `icmpfwd serve`, from (highest first) command-line flags,
 * `ICMPFWD_*` environment variables, a JSON config file, and the defaults. Every option is
 * declared once in SPECS; errors name the field, its flag and its variable.
 */
import { spawnSync } from "node:child_process";
import { accessSync, constants, readFileSync, statSync } from "node:fs";
import { z } from "zod";
import { parseAddressWithPrefix, Subnet } from "./netstack/address.js";

const prefixed = z.string().refine((s) => parseAddressWithPrefix(s) !== null, {
  message: "expected ADDRESS/PREFIX, e.g. 198.18.0.2/24",
});
const subnet = z.string().refine((s) => Subnet.parse(s) !== null, {
  message: "expected a network prefix, e.g. 198.18.128.0/17",
});
/** `host:port` (IPv6 hosts in brackets, which are dropped; port 0 = any free port), or null. */
export function parseHostPort(s: string): { host: string; port: number } | null {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(s);
  if (m === null || Number(m[2]) > 65535) return null;
  return { host: m[1].replace(/^\[|\]$/g, ""), port: Number(m[2]) };
}
/** `host:port` or `unix:/absolute/path`. */
const listenAddress = z
  .string()
  .refine(
    (s) =>
      s.startsWith("unix:")
        ? s.length > "unix:/".length && s[5] === "/"
        : parseHostPort(s) !== null,
    { message: "expected HOST:PORT (e.g. 127.0.0.1:50051, [::1]:50051) or unix:/path" },
  );
const hostPort = z.string().refine((s) => parseHostPort(s) !== null, {
  message: "expected HOST:PORT (e.g. 127.0.0.1:9464) or off",
});
const policyAction = z.enum(["fallthrough", "consume"]);

/** The first problem reading a file (missing, unreadable, a directory); null when it reads. */
function unreadable(path: string): string | null {
  try {
    accessSync(path, constants.R_OK);
    if (statSync(path).isDirectory()) return `${path} is a directory`;
    return null;
  } catch (e) {
    return `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
  }
}

/** A file the service reads at start-up (certificates, keys, the authz file). */
const readableFile = z
  .string()
  .min(1)
  .superRefine((path, ctx) => {
    const problem = unreadable(path);
    if (problem !== null) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem });
  });

/** A user or group database entry (`getent passwd|group NAME`): [name, id, primary gid]. */
export function lookupAccount(db: "passwd" | "group", nameOrId: string): number[] | null {
  const r = spawnSync("getent", [db, nameOrId], { encoding: "utf8", timeout: 5000 });
  if (r.status !== 0 || r.stdout === "") return null;
  const f = r.stdout.split("\n")[0].split(":");
  return db === "passwd" ? [Number(f[2]), Number(f[3])] : [Number(f[2])];
}

/** A user or group: a name in the system database, or a numeric id. */
const account = (db: "passwd" | "group") =>
  z
    .string()
    .min(1)
    .superRefine((v, ctx) => {
      if (/^\d+$/.test(v) && Number(v) < 2 ** 32 - 1) return;
      if (lookupAccount(db, v) === null)
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          message: `no ${db === "passwd" ? "user" : "group"} named ${JSON.stringify(v)}`,
        });
    });
const deviceName = z
  .string()
  .min(1)
  .max(15, { message: "interface names have at most 15 characters" })
  .regex(/^[A-Za-z0-9_.-]+$/, { message: "letters, digits, '_', '.', '-' only" });

type Kind = "string" | "int" | "number" | "bool" | "list";

/**
 * Every option, declared once: its flag (and so its ICMPFWD_* variable and config-file key),
 * how its text is read, its help, and its schema — validation and default together. The
 * defaults live here and nowhere else: components take them from the resolved Config.
 */
const SPECS = {
  tun: {
    flag: "--tun",
    kind: "string",
    description: "name of the TUN device to create",
    schema: deviceName.default("icmpfwd0"),
  },
  tunAttach: {
    flag: "--tun-attach",
    kind: "string",
    description:
      "attach to this persistent TUN device (created by an administrator) instead of creating one; works without root",
    schema: deviceName.optional(),
  },
  mtu: {
    flag: "--mtu",
    kind: "int",
    description: "MTU of the TUN device",
    schema: z
      .number()
      .int()
      .min(1280, { message: "must be at least 1280 (the IPv6 minimum MTU)" })
      .max(65535)
      .default(1500),
  },
  kernelAddresses: {
    flag: "--kernel-address",
    kind: "list",
    description: "addresses of the kernel side of the TUN (repeatable)",
    schema: z.array(prefixed).default(() => ["198.18.0.1/24", "fd00:1::1/64"]),
  },
  addresses: {
    flag: "--address",
    kind: "list",
    description: "addresses the netstack owns, with on-link routes (repeatable)",
    schema: z
      .array(prefixed)
      .min(1)
      .default(() => ["198.18.0.2/24", "fd00:1::2/64", "fe80::2/64"]),
  },
  routes: {
    flag: "--route",
    kind: "list",
    description: "extra prefixes routed into the TUN, on both sides (repeatable)",
    schema: z.array(subnet).default(() => []),
  },
  promiscuous: {
    flag: "--promiscuous",
    kind: "bool",
    description: "accept any destination as a temporary address (and send from it)",
    schema: z.boolean().default(false),
  },
  temporaryReply: {
    flag: "--temporary-reply",
    kind: "bool",
    description:
      "answer IPv4 temporary addresses (with --promiscuous) through ForwarderRequest.reply(), the seed's large-address-space handler",
    schema: z.boolean().default(false),
  },
  configureKernel: {
    flag: "--configure-kernel",
    kind: "bool",
    description: "assign the kernel-side addresses and routes with ip(8) at start-up",
    schema: z.boolean().default(true),
  },
  defaultTtl: {
    flag: "--default-ttl",
    kind: "int",
    description: "TTL / hop limit of replies",
    schema: z.number().int().min(1).max(255).default(64),
  },
  icmpRateLimit: {
    flag: "--icmp-rate-limit",
    kind: "number",
    description: "ICMP messages per second for rate-limited types",
    schema: z.number().positive().default(1000),
  },
  icmpBurst: {
    flag: "--icmp-burst",
    kind: "int",
    description: "ICMP rate limiter burst",
    schema: z.number().int().min(1).default(50),
  },
  ipv4ReassemblyTimeoutMs: {
    flag: "--ipv4-reassembly-timeout-ms",
    kind: "int",
    description: "how long an incomplete IPv4 datagram is kept (gVisor: 30 s)",
    schema: z.number().int().min(1).max(3_600_000).default(30_000),
  },
  ipv6ReassemblyTimeoutMs: {
    flag: "--ipv6-reassembly-timeout-ms",
    kind: "int",
    description: "how long an incomplete IPv6 packet is kept (RFC 8200: 60 s)",
    schema: z.number().int().min(1).max(3_600_000).default(60_000),
  },
  reassemblyHighThreshold: {
    flag: "--reassembly-high-threshold",
    kind: "int",
    description:
      "reassembly memory per IP version above which the oldest datagrams are evicted (bytes)",
    schema: z
      .number()
      .int()
      .min(1)
      .max(1 << 30)
      .default(4 * 1024 * 1024),
  },
  reassemblyLowThreshold: {
    flag: "--reassembly-low-threshold",
    kind: "int",
    description: "what eviction brings reassembly memory down to (bytes)",
    schema: z
      .number()
      .int()
      .min(0)
      .max(1 << 30)
      .default(3 * 1024 * 1024),
  },
  maxReassembledDatagramSize: {
    flag: "--max-reassembled-datagram-size",
    kind: "int",
    description:
      "largest datagram reassembly may produce, headers included (default and ceiling: 65535 for IPv4, 65575 for IPv6)",
    schema: z.number().int().min(1280).max(65_575).optional(),
  },
  pcap: {
    flag: "--pcap",
    kind: "string",
    description: "write every TUN packet to this pcapng file",
    schema: z.string().min(1).optional(),
  },
  statsFile: {
    flag: "--stats-file",
    kind: "string",
    description: "keep every counter in this JSON file (rewritten periodically and at exit)",
    schema: z.string().min(1).optional(),
  },
  statsIntervalMs: {
    flag: "--stats-interval-ms",
    kind: "int",
    description: "how often the stats file is rewritten",
    schema: z.number().int().min(50).max(3_600_000).default(250),
  },
  logLevel: {
    flag: "--log-level",
    kind: "string",
    description: "pino log level",
    schema: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
  },
  logFormat: {
    flag: "--log-format",
    kind: "string",
    description: "log lines: json, pretty (one readable line each), or auto (pretty on a terminal)",
    schema: z.enum(["auto", "pretty", "json"]).default("auto"),
  },
  listen: {
    flag: "--listen",
    kind: "string",
    description: "gRPC listen address: HOST:PORT or unix:/path",
    schema: listenAddress.default("127.0.0.1:50051"),
  },
  deadline: {
    flag: "--deadline",
    kind: "int",
    description: "milliseconds a policy client has to decide each Echo Request (1–10000)",
    schema: z.number().int().min(1).max(10_000).default(100),
  },
  onTimeout: {
    flag: "--on-timeout",
    kind: "string",
    description:
      "what a request gets when no verdict came before its deadline: fallthrough|consume",
    schema: policyAction.default("fallthrough"),
  },
  onNoClient: {
    flag: "--on-no-client",
    kind: "string",
    description: "what a request gets when no decide session matches it: fallthrough|consume",
    schema: policyAction.default("fallthrough"),
  },
  onOverload: {
    flag: "--on-overload",
    kind: "string",
    description:
      "what a request gets when every matching session is full or not writable: fallthrough|consume",
    schema: policyAction.default("fallthrough"),
  },
  onDisconnect: {
    flag: "--on-disconnect",
    kind: "string",
    description:
      "what an in-flight request gets when its session ends and no other can take it: fallthrough|consume",
    schema: policyAction.default("fallthrough"),
  },
  drainTimeout: {
    flag: "--drain-timeout",
    kind: "int",
    description: "milliseconds SIGTERM waits for held requests to be decided before exiting",
    schema: z.number().int().min(0).max(600_000).default(5000),
  },
  maxInFlight: {
    flag: "--max-in-flight",
    kind: "int",
    description: "a session's in-flight limit when its Hello asks for none",
    schema: z.number().int().min(1).max(65_536).default(1024),
  },
  maxBatch: {
    flag: "--max-batch",
    kind: "int",
    description: "most Echo Requests in one message to a session",
    schema: z.number().int().min(1).max(4096).default(128),
  },
  syntheticWindow: {
    flag: "--synthetic-window",
    kind: "int",
    description:
      "milliseconds after a CONSUME verdict in which the session may send a SyntheticReply (0: off)",
    schema: z.number().int().min(0).max(600_000).default(10_000),
  },
  observerQueue: {
    flag: "--observer-queue",
    kind: "int",
    description: "copies an observe session may have queued; more are dropped and counted",
    schema: z.number().int().min(1).max(4000).default(1024),
  },
  maxConnections: {
    flag: "--max-connections",
    kind: "int",
    description:
      "connections the gRPC listener holds at once (each costs 20–40 KB idle); one more is closed right after accept, with a rate-limited warning",
    schema: z.number().int().min(1).max(1_000_000).default(4096),
  },
  helloTimeout: {
    flag: "--hello-timeout",
    kind: "int",
    description:
      "milliseconds a Connect stream may go without Hello; then it ends DEADLINE_EXCEEDED",
    schema: z.number().int().min(100).max(600_000).default(10_000),
  },
  token: {
    flag: "--token",
    kind: "string",
    description: 'require `authorization: Bearer TOKEN` (identity "token") or a client certificate',
    schema: z.string().min(16, { message: "use a token of at least 16 characters" }).optional(),
  },
  insecureToken: {
    flag: "--insecure-token",
    kind: "bool",
    description: "allow a token over a plaintext listener that is not loopback",
    schema: z.boolean().default(false),
  },
  allowUnauthenticated: {
    flag: "--allow-unauthenticated",
    kind: "bool",
    description:
      "let callers without credentials do everything (a TCP listener that is not loopback refuses to start without --token, --authz or --tls-client-ca otherwise)",
    schema: z.boolean().default(false),
  },
  tlsCert: {
    flag: "--tls-cert",
    kind: "string",
    description: "serve gRPC over TLS (1.2 or later) with this PEM certificate chain",
    schema: readableFile.optional(),
  },
  tlsKey: {
    flag: "--tls-key",
    kind: "string",
    description: "the PEM private key of --tls-cert",
    schema: readableFile.optional(),
  },
  tlsClientCa: {
    flag: "--tls-client-ca",
    kind: "string",
    description:
      "mTLS: require client certificates signed by this PEM CA; the subject CN is the identity",
    schema: readableFile.optional(),
  },
  authz: {
    flag: "--authz",
    kind: "string",
    description:
      "JSON file: tokens → identities, identities → allowed modes (decide, observe, admin) and destination prefixes",
    schema: readableFile.optional(),
  },
  user: {
    flag: "--user",
    kind: "string",
    description:
      "drop root to this user (name or uid) once the TUN is open, its kernel side configured and the listeners bound",
    schema: account("passwd").optional(),
  },
  group: {
    flag: "--group",
    kind: "string",
    description: "drop to this group (name or gid); default with --user: the user's primary group",
    schema: account("group").optional(),
  },
  healthListen: {
    flag: "--health-listen",
    kind: "string",
    description:
      "HOST:PORT of a plaintext listener serving only grpc.health.v1 (probes without a client certificate under mTLS), or off",
    schema: z.union([z.literal("off"), hostPort]).default("off"),
  },
  metricsListen: {
    flag: "--metrics-listen",
    kind: "string",
    description: "HOST:PORT of the Prometheus /metrics endpoint, or off",
    schema: z.union([z.literal("off"), hostPort]).default("127.0.0.1:9464"),
  },
  metricsMaxSessions: {
    flag: "--metrics-max-sessions",
    kind: "int",
    description:
      'client names the decision-time histogram labels at a time (the rest: session="other"); a closed session\'s series goes',
    schema: z.number().int().min(0).max(10_000).default(100),
  },
  tracing: {
    flag: "--tracing",
    kind: "string",
    description:
      "span exporter: otlp, console or none (unset: OTEL_TRACES_EXPORTER, or otlp when an OTLP endpoint is set, else off)",
    schema: z.enum(["otlp", "console", "none"]).optional(),
  },
  traceSampleRatio: {
    flag: "--trace-sample-ratio",
    kind: "number",
    description:
      "head sampling: the share of Echo Requests traced, 0–1 (unset: OTEL_TRACES_SAMPLER)",
    schema: z.number().min(0).max(1).optional(),
  },
} as const satisfies Record<
  string,
  { flag: string; kind: Kind; description: string; schema: z.ZodTypeAny }
>;

type Shape = { [K in keyof typeof SPECS]: (typeof SPECS)[K]["schema"] };
const shape = Object.fromEntries(
  Object.entries(SPECS).map(([key, spec]) => [key, spec.schema]),
) as Shape;

export const configSchema = z
  .object(shape)
  .strict()
  .strict()
  .refine((c) => (c.tlsCert === undefined) === (c.tlsKey === undefined), {
    message: "--tls-cert and --tls-key go together",
    path: ["tlsKey"],
  })
  .refine((c) => c.tlsClientCa === undefined || c.tlsCert !== undefined, {
    message: "mTLS needs TLS: give --tls-cert and --tls-key too",
    path: ["tlsClientCa"],
  })
  .refine(
    (c) =>
      (c.token === undefined && c.authz === undefined) ||
      c.tlsCert !== undefined ||
      c.insecureToken ||
      isLoopbackListen(c.listen),
    {
      message:
        "a bearer token over a plaintext non-loopback listener is refused: add --tls-cert/--tls-key, listen on loopback or a unix socket, or pass --insecure-token",
      path: ["token"],
    },
  )
  .refine(
    (c) =>
      isLoopbackListen(c.listen) ||
      c.token !== undefined ||
      c.authz !== undefined ||
      c.tlsClientCa !== undefined ||
      c.allowUnauthenticated,
    {
      message:
        "a TCP listener that is not loopback needs credentials: anyone who reaches it could steer the service. Add --token, --authz or mTLS (--tls-client-ca), or pass --allow-unauthenticated",
      path: ["listen"],
    },
  )
  .refine((c) => c.reassemblyLowThreshold <= c.reassemblyHighThreshold, {
    message: "must not exceed reassemblyHighThreshold",
    path: ["reassemblyLowThreshold"],
  });

export type Config = z.infer<typeof configSchema>;

/** Whether a listen address only accepts local callers (unix socket, 127.0.0.0/8, ::1, localhost). */
export function isLoopbackListen(listen: string): boolean {
  if (listen.startsWith("unix:")) return true;
  const host = listen.slice(0, listen.lastIndexOf(":")).replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

interface OptionSpec {
  key: keyof Config;
  flag: string;
  kind: Kind;
  description: string;
  /** From the schema: undefined for options that are unset unless given. */
  default: Config[keyof Config];
}

function defaultOf(schema: z.ZodTypeAny): unknown {
  return schema instanceof z.ZodDefault ? schema._def.defaultValue() : undefined;
}

/** Every option as the command line and the help show it. */
export const OPTIONS: readonly OptionSpec[] = Object.entries(SPECS).map(([key, spec]) => ({
  key: key as keyof Config,
  flag: spec.flag,
  kind: spec.kind,
  description: spec.description,
  default: defaultOf(spec.schema) as Config[keyof Config],
}));

export function envName(key: string): string {
  return `ICMPFWD_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

function describeField(key: string): string {
  const spec = OPTIONS.find((o) => o.key === key);
  return spec ? `${key} (${spec.flag}, ${envName(key)})` : key;
}

function fromText(spec: OptionSpec, text: string): unknown {
  switch (spec.kind) {
    case "string":
      return text;
    case "int":
    case "number": {
      const n = Number(text);
      if (text.trim() === "" || Number.isNaN(n)) {
        throw new ConfigError(
          `invalid configuration: ${describeField(spec.key)}: "${text}" is not a number`,
        );
      }
      return n;
    }
    case "bool":
      if (/^(1|true|yes|on)$/i.test(text)) return true;
      if (/^(0|false|no|off)$/i.test(text)) return false;
      throw new ConfigError(
        `invalid configuration: ${describeField(spec.key)}: "${text}" is not a boolean`,
      );
    case "list":
      return text
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
  }
}

/** Values from ICMPFWD_* variables. */
export function fromEnvironment(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const spec of OPTIONS) {
    const v = env[envName(spec.key)];
    if (v !== undefined) out[spec.key] = fromText(spec, v);
  }
  return out;
}

/** Values from a JSON config file whose keys are the option keys (e.g. "defaultTtl"). */
export function fromFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${path} must hold a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

/** Converts commander's parsed flag values (strings, booleans, arrays) to typed values. */
export function fromFlags(flags: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const spec of OPTIONS) {
    const v = flags[spec.key];
    if (v === undefined) continue;
    if (spec.kind === "list" && Array.isArray(v))
      out[spec.key] = v.flatMap((x) => fromText(spec, String(x)) as string[]);
    else if (typeof v === "string") out[spec.key] = fromText(spec, v);
    else out[spec.key] = v;
  }
  return out;
}

/** Merges the layers (later wins) and validates once; throws ConfigError naming the field. */
export function resolveConfig(...layers: Record<string, unknown>[]): Config {
  const merged: Record<string, unknown> = Object.assign({}, ...layers);
  const result = configSchema.safeParse(merged);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    if (issue.code === "unrecognized_keys")
      return `unknown option ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
    const key = String(issue.path[0] ?? "");
    const at = issue.path.length > 1 ? `[${issue.path.slice(1).join(".")}]` : "";
    return `${describeField(key)}${at}: ${issue.message}`;
  });
  throw new ConfigError(`invalid configuration: ${problems.join("; ")}`);
}
