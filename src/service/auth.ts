/**
 * Who is calling and what they may do (docs/security.md): a bearer token (`authorization:
 * Bearer …`, compared in constant time) or a verified client certificate (its subject CN) gives
 * an identity; an optional authorization file maps identities to the modes they may use and the
 * destination prefixes their filters may claim. A caller with no credentials on this host is
 * known by its uid (the owner of its loopback socket, peer-uid.ts): `uid:N`, and by the file's
 * `user:NAME` / `group:NAME` identities. With nothing configured, only root and the user the
 * service runs as may call (the unix socket's file mode admits only them). Failures are
 * ServiceErrors (UNAUTHENTICATED / PERMISSION_DENIED with a reason), mapped to gRPC in errors.ts.
 */
import { spawnSync } from "node:child_process";
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import type { PeerCertificate } from "node:tls";
import type { Metadata } from "@grpc/grpc-js";
import { z } from "zod";
import type { Filter } from "../gen/icmpfwd/v1/forwarder.js";
import { Subnet } from "../netstack/address.js";
import { type ServiceError, serviceError } from "./errors.js";
import { type ConnectionEnds, peerUid } from "./peer-uid.js";

/** What a grant may allow: a Connect mode, or the admin RPCs (GetStats, WatchStats, ListSessions, Ping). */
export type Right = "decide" | "observe" | "admin";

export interface Grant {
  readonly modes: ReadonlySet<Right>;
  /** Destination prefixes a session's filter must stay within; null: any filter. */
  readonly destinationPrefixes: readonly Subnet[] | null;
}

export interface Principal {
  /** "" without authentication; "token" for --token; a token's name or a certificate's CN. */
  readonly identity: string;
  readonly grant: Grant;
}

export const ALL_RIGHTS: Grant = {
  modes: new Set<Right>(["decide", "observe", "admin"]),
  destinationPrefixes: null,
};

const prefix = z.string().refine((s) => Subnet.parse(s) !== null, {
  message: "expected a network prefix, e.g. 198.18.0.0/24",
});

/** The `--authz FILE` format. */
export const authzSchema = z
  .object({
    /** Bearer token → identity. */
    tokens: z
      .record(
        z.string().min(16, { message: "tokens have at least 16 characters" }),
        z.string().min(1),
      )
      .default({}),
    /** Identity (a token's name or a certificate's subject CN) → what it may do. */
    identities: z.record(
      z.string().min(1),
      z
        .object({
          modes: z.array(z.enum(["decide", "observe", "admin"])),
          destinationPrefixes: z.array(prefix).optional(),
        })
        .strict(),
    ),
  })
  .strict();

export type AuthzFile = z.infer<typeof authzSchema>;

/** Reads and validates an authorization file; the error names the bad field. */
export function loadAuthz(path: string): AuthzFile | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    return `cannot read ${path}: ${(e as Error).message}`;
  }
  const r = authzSchema.safeParse(parsed);
  if (r.success) return r.data;
  const i = r.error.issues[0];
  return `${path}: ${i.path.join(".")}: ${i.message}`;
}

export interface AuthOptions {
  /** `--token`: a bearer token whose identity is "token" (all rights unless --authz says otherwise). */
  token?: string;
  authz?: AuthzFile;
  /** mTLS: a verified client certificate is an identity. */
  clientCertificates?: boolean;
  /** `--allow-unauthenticated`: a caller without credentials may do everything. */
  allowUnauthenticated?: boolean;
}

/** The host's account database, as the local-caller check needs it (tests replace it). */
export interface Accounts {
  /** The uid owning the client end of a loopback TCP connection; null: not a local TCP peer. */
  peerUid(c: ConnectionEnds): number | null;
  /** The user's name and the names of its groups (primary and supplementary). */
  namesOf(uid: number): { user: string | null; groups: string[] };
  /** The uid the service runs as now (after --user). */
  serviceUid(): number;
}

export const systemAccounts: Accounts = {
  peerUid: (c) => peerUid(c),
  namesOf(uid) {
    const r = spawnSync("id", ["-nG", String(uid)], { encoding: "utf8", timeout: 2000 });
    const u = spawnSync("id", ["-nu", String(uid)], { encoding: "utf8", timeout: 2000 });
    return {
      user: u.status === 0 ? u.stdout.trim() : null,
      groups: r.status === 0 ? r.stdout.trim().split(/\s+/).filter(Boolean) : [],
    };
  },
  serviceUid: () => process.getuid?.() ?? -1,
};

/** How a call reached the service: the connection's ends (TCP) or none (a unix socket). */
export interface CallOrigin {
  connection: ConnectionEnds;
}

const digest = (s: string): Buffer => createHash("sha256").update(s).digest();

export class Authenticator {
  private tokens: { digest: Buffer; identity: string }[] = [];
  private grants: Map<string, Grant> | null = null;
  /** Whether a call must carry credentials (a token, a certificate or a local uid with a grant). */
  required = false;
  private allowUnauthenticated = false;
  /** Whether the authorization file names local accounts (`uid:`, `user:`, `group:`). */
  private localGrants = false;

  constructor(
    o: AuthOptions = {},
    private readonly accounts: Accounts = systemAccounts,
  ) {
    this.update(o);
  }

  /**
   * Replaces the tokens and grants (live reconfiguration): calls from now on are checked
   * against them; sessions already authenticated keep running.
   */
  update(o: AuthOptions): void {
    const tokens: { digest: Buffer; identity: string }[] = [];
    if (o.token !== undefined) tokens.push({ digest: digest(o.token), identity: "token" });
    for (const [t, identity] of Object.entries(o.authz?.tokens ?? {}))
      tokens.push({ digest: digest(t), identity });
    this.tokens = tokens;
    this.grants =
      o.authz === undefined
        ? null
        : new Map(
            Object.entries(o.authz.identities).map(([id, g]) => [
              id,
              {
                modes: new Set<Right>(g.modes),
                destinationPrefixes:
                  g.destinationPrefixes?.map((p) => Subnet.parse(p) as Subnet) ?? null,
              },
            ]),
          );
    this.required =
      this.tokens.length > 0 || o.clientCertificates === true || o.authz !== undefined;
    this.allowUnauthenticated = o.allowUnauthenticated === true;
    this.localGrants = Object.keys(o.authz?.identities ?? {}).some((id) =>
      /^(uid|user|group):/.test(id),
    );
  }

  /**
   * The caller of a call with this metadata, (TLS) peer certificate and connection (its ends
   * are those of a TCP connection; a unix socket's are empty).
   */
  authenticate(
    metadata: Metadata,
    peer: PeerCertificate | undefined,
    connection: ConnectionEnds = {},
  ): Principal | ServiceError {
    const anonymous =
      metadata.get("authorization").length === 0 && typeof peer?.subject?.CN !== "string";
    if (anonymous && !this.allowUnauthenticated) {
      if (!this.required) return this.localCaller(connection);
      if (this.localGrants) {
        const p = this.grantedLocalCaller(connection);
        if (p !== null) return p;
      }
    }
    const identity = this.identify(metadata, peer);
    if (typeof identity !== "string") return identity;
    if (this.grants === null) return { identity, grant: ALL_RIGHTS };
    const grant = this.grants.get(identity);
    if (grant === undefined)
      return serviceError(
        "permissionDenied",
        `identity "${identity}" has no grant in the authorization file`,
      );
    return { identity, grant };
  }

  /**
   * No credentials configured: root and the service's own user may do everything. Over a unix
   * socket only they can connect (its file is theirs, mode 0600); over loopback TCP the owner
   * of the client's socket says who it is; anyone else is refused.
   */
  private localCaller(c: ConnectionEnds): Principal | ServiceError {
    if (c.remoteAddress === undefined) return { identity: "local", grant: ALL_RIGHTS };
    const uid = this.accounts.peerUid(c);
    const service = this.accounts.serviceUid();
    if (uid === null)
      return serviceError(
        "unauthenticated",
        `no credentials from ${c.remoteAddress}: without --token, --authz or mTLS only local callers (root, uid ${service}) are served`,
      );
    if (uid === 0 || uid === service) return { identity: `uid:${uid}`, grant: ALL_RIGHTS };
    return serviceError(
      "permissionDenied",
      `uid ${uid} may not call icmpfwd: only root and the service's user (uid ${service}) may, unless --authz grants "uid:${uid}", "user:NAME" or "group:NAME"`,
    );
  }

  /** A local caller the authorization file grants something to (by uid, user or group); null: none. */
  private grantedLocalCaller(c: ConnectionEnds): Principal | null {
    const uid = c.remoteAddress === undefined ? null : this.accounts.peerUid(c);
    if (uid === null || this.grants === null) return null;
    const names = this.accounts.namesOf(uid);
    const ids = [
      `uid:${uid}`,
      ...(names.user === null ? [] : [`user:${names.user}`]),
      ...names.groups.map((g) => `group:${g}`),
    ];
    const matched = ids.flatMap((id) => {
      const g = this.grants?.get(id);
      return g === undefined ? [] : [[id, g] as const];
    });
    if (matched.length === 0) return null;
    // Several grants (a user in two granted groups): the union of their modes and prefixes.
    const modes = new Set<Right>(matched.flatMap(([, g]) => [...g.modes]));
    const prefixes = matched.some(([, g]) => g.destinationPrefixes === null)
      ? null
      : matched.flatMap(([, g]) => g.destinationPrefixes ?? []);
    return {
      identity: matched.map(([id]) => id).join(","),
      grant: { modes, destinationPrefixes: prefixes },
    };
  }

  private identify(metadata: Metadata, peer: PeerCertificate | undefined): string | ServiceError {
    const header = metadata.get("authorization")[0];
    if (header !== undefined) {
      const m = /^Bearer (.+)$/.exec(String(header));
      if (m === null)
        return serviceError("unauthenticated", "the authorization header is not `Bearer TOKEN`");
      const d = digest(m[1]);
      let found: string | null = null;
      // Every token is compared (constant time each), so timing tells nothing about which.
      for (const t of this.tokens)
        if (timingSafeEqual(d, t.digest) && found === null) found = t.identity;
      if (found !== null) return found;
      return serviceError("unauthenticated", "the bearer token is not valid");
    }
    const cn = peer?.subject?.CN;
    if (typeof cn === "string" && cn.length > 0) return cn;
    if (this.required)
      return serviceError(
        "unauthenticated",
        "no credentials: send `authorization: Bearer TOKEN` or a client certificate",
      );
    return "";
  }
}

/** Whether `p` may use `right`. */
export function authorize(p: Principal, right: Right): ServiceError | null {
  if (p.grant.modes.has(right)) return null;
  const who = p.identity === "" ? "an anonymous client" : `identity "${p.identity}"`;
  const what = right === "admin" ? "the admin RPCs" : `MODE_${right.toUpperCase()}`;
  return serviceError("permissionDenied", `${who} may not use ${what}`);
}

/** Whether a session filter stays within the destination prefixes `p` may claim. */
export function authorizeFilter(p: Principal, filter: Filter | undefined): ServiceError | null {
  const allowed = p.grant.destinationPrefixes;
  if (allowed === null) return null;
  const claimed = filter?.destinationPrefixes ?? [];
  const list = allowed.map((s) => s.toString()).join(", ");
  if (claimed.length === 0)
    return serviceError(
      "permissionDenied",
      `identity "${p.identity}" must claim filter.destination_prefixes within ${list}`,
    );
  for (const text of claimed) {
    const s = Subnet.parse(text);
    if (s === null) continue; // the filter's own validation names it
    if (!allowed.some((a) => a.prefixLength <= s.prefixLength && a.contains(s.address)))
      return serviceError(
        "permissionDenied",
        `identity "${p.identity}" may not claim ${text}: allowed ${list}`,
      );
  }
  return null;
}
