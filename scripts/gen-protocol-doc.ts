/**
 * Renders docs/protocol.md from the comments of proto/icmpfwd/v1/*.proto (the proto text is
 * parsed here: services and RPCs, messages with their fields and oneofs, enums and values,
 * each with the `//` comment lines right above it). `npm run docs:protocol` rewrites the file;
 * `--check` exits 1 when the committed file is stale (test/unit/repo/protocol-doc.test.ts does
 * the same comparison).
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export interface ProtoField {
  name: string;
  number: number;
  /** As written: "repeated string", "map<string, uint64>", "optional bytes", a message name. */
  type: string;
  oneof: string | null;
  comment: string;
}

export interface ProtoMessage {
  name: string;
  comment: string;
  fields: ProtoField[];
}

export interface ProtoEnum {
  name: string;
  comment: string;
  values: { name: string; number: number; comment: string }[];
}

export interface ProtoRpc {
  name: string;
  request: string;
  response: string;
  clientStreaming: boolean;
  serverStreaming: boolean;
  comment: string;
}

export interface ProtoService {
  name: string;
  comment: string;
  rpcs: ProtoRpc[];
}

export interface ProtoFile {
  path: string;
  /** The comment block at the top of the file (before `syntax`). */
  header: string;
  package: string;
  services: ProtoService[];
  messages: ProtoMessage[];
  enums: ProtoEnum[];
}

/** Parses the subset of proto3 this project writes; throws naming the line it cannot read. */
export function parseProto(path: string, text: string): ProtoFile {
  const file: ProtoFile = { path, header: "", package: "", services: [], messages: [], enums: [] };
  let pending: string[] = [];
  let headerDone = false;
  /** What the open braces are, innermost last. */
  const stack: (
    | { kind: "service"; s: ProtoService }
    | { kind: "message"; m: ProtoMessage }
    | { kind: "enum"; e: ProtoEnum }
    | { kind: "oneof"; name: string; m: ProtoMessage }
  )[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    const fail = (): never => {
      throw new Error(`${path}:${i + 1}: cannot read: ${line}`);
    };
    if (line.startsWith("//")) {
      pending.push(line.replace(/^\/\/ ?/, ""));
      continue;
    }
    const comment = pending.join(" ").trim();
    pending = [];
    if (line === "") {
      if (!headerDone && comment !== "") {
        file.header = comment;
        headerDone = true;
      } else if (comment !== "") pending = [];
      continue;
    }
    if (/^syntax\s*=/.test(line)) {
      if (!headerDone) file.header = comment;
      headerDone = true;
      continue;
    }
    headerDone = true;
    const pkg = /^package\s+([\w.]+);$/.exec(line);
    if (pkg !== null) {
      file.package = pkg[1];
      continue;
    }
    if (/^(import|option)\s/.test(line)) continue;
    const top = stack[stack.length - 1];
    if (line === "}") {
      if (stack.pop() === undefined) fail();
      continue;
    }
    const service = /^service\s+(\w+)\s*\{$/.exec(line);
    if (service !== null) {
      const s = { name: service[1], comment, rpcs: [] };
      file.services.push(s);
      stack.push({ kind: "service", s });
      continue;
    }
    const message = /^message\s+(\w+)\s*\{\s*(\})?$/.exec(line);
    if (message !== null) {
      const msg = { name: message[1], comment, fields: [] };
      file.messages.push(msg);
      if (message[2] === undefined) stack.push({ kind: "message", m: msg });
      continue;
    }
    const en = /^enum\s+(\w+)\s*\{$/.exec(line);
    if (en !== null) {
      const e = { name: en[1], comment, values: [] };
      file.enums.push(e);
      stack.push({ kind: "enum", e });
      continue;
    }
    const oneof = /^oneof\s+(\w+)\s*\{$/.exec(line);
    if (top?.kind === "message" && oneof !== null) {
      stack.push({ kind: "oneof", name: oneof[1], m: top.m });
      continue;
    }
    if (top?.kind === "service") {
      const m =
        /^rpc\s+(\w+)\s*\(\s*(stream\s+)?([\w.]+)\s*\)\s*returns\s*\(\s*(stream\s+)?([\w.]+)\s*\)\s*;$/.exec(
          line,
        );
      if (m === null) fail();
      const r = m as RegExpExecArray;
      top.s.rpcs.push({
        name: r[1],
        request: r[3],
        response: r[5],
        clientStreaming: r[2] !== undefined,
        serverStreaming: r[4] !== undefined,
        comment,
      });
      continue;
    }
    if (top?.kind === "enum") {
      const m = /^(\w+)\s*=\s*(\d+);$/.exec(line);
      if (m === null) fail();
      const r = m as RegExpExecArray;
      top.e.values.push({ name: r[1], number: Number(r[2]), comment });
      continue;
    }
    if (top?.kind === "message" || top?.kind === "oneof") {
      const m =
        /^((?:repeated\s+|optional\s+)?(?:map<\s*\w+\s*,\s*[\w.]+\s*>|[\w.]+))\s+(\w+)\s*=\s*(\d+);$/.exec(
          line,
        );
      if (m === null) fail();
      const r = m as RegExpExecArray;
      top.m.fields.push({
        name: r[2],
        number: Number(r[3]),
        type: r[1].replace(/\s+/g, " ").replace(/<\s*/, "<").replace(/\s*>/, ">"),
        oneof: top.kind === "oneof" ? top.name : null,
        comment,
      });
      continue;
    }
    fail();
  }
  if (stack.length > 0) throw new Error(`${path}: unclosed ${stack[stack.length - 1].kind}`);
  return file;
}

const cell = (s: string): string => s.replace(/\|/g, "\\|");
const anchor = (name: string): string => name.toLowerCase();

/** Links a type to its section when it is declared in one of the files. */
function typeLink(type: string, known: ReadonlySet<string>): string {
  return type.replace(/[\w.]+/g, (t) => {
    const short = t.replace(/^icmpfwd\.v1\./, "");
    return known.has(short) ? `[${short}](#${anchor(short)})` : t;
  });
}

export function renderProtocolDoc(files: readonly ProtoFile[]): string {
  const known = new Set(files.flatMap((f) => [...f.messages, ...f.enums].map((x) => x.name)));
  const out: string[] = [
    "# The icmpfwd wire protocol",
    "",
    "<!-- Generated by scripts/gen-protocol-doc.ts from the comments in proto/icmpfwd/v1/*.proto.",
    "     Do not edit: change the proto comments and run `npm run docs:protocol`. -->",
    "",
    "Every service, RPC, message, field, enum and value of the `proto/icmpfwd/v1` files, with the",
    "comment written above it in the proto. The README explains how the pieces fit together;",
    "`docs/policy-guide.md` shows them in use.",
    "",
  ];
  for (const f of files) {
    out.push(`## \`${f.path}\` (package \`${f.package}\`)`, "");
    if (f.header !== "") out.push(f.header, "");
    for (const s of f.services) {
      out.push(`### service ${s.name}`, "");
      if (s.comment !== "") out.push(s.comment, "");
      out.push("| RPC | request | response | description |", "| --- | --- | --- | --- |");
      for (const r of s.rpcs)
        out.push(
          `| \`${r.name}\` | ${r.clientStreaming ? "stream " : ""}${typeLink(r.request, known)} | ${r.serverStreaming ? "stream " : ""}${typeLink(r.response, known)} | ${cell(r.comment)} |`,
        );
      out.push("");
    }
    for (const e of f.enums) {
      out.push(`### enum ${e.name}`, "");
      if (e.comment !== "") out.push(e.comment, "");
      out.push("| value | number | description |", "| --- | --- | --- |");
      for (const v of e.values) out.push(`| \`${v.name}\` | ${v.number} | ${cell(v.comment)} |`);
      out.push("");
    }
    for (const m of f.messages) {
      out.push(`### ${m.name}`, "");
      if (m.comment !== "") out.push(m.comment, "");
      if (m.fields.length === 0) {
        out.push("No fields.", "");
        continue;
      }
      out.push("| field | number | type | description |", "| --- | --- | --- | --- |");
      for (const fl of m.fields) {
        const oneof = fl.oneof === null ? "" : ` (oneof \`${fl.oneof}\`)`;
        out.push(
          `| \`${fl.name}\` | ${fl.number} | ${cell(typeLink(fl.type, known))}${oneof} | ${cell(fl.comment)} |`,
        );
      }
      out.push("");
    }
  }
  return `${out.join("\n").trimEnd()}\n`;
}

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const PROTO_DIR = join(ROOT, "proto", "icmpfwd", "v1");
export const DOC_PATH = join(ROOT, "docs", "protocol.md");

/** The document as the current protos give it (forwarder.proto first, then the rest by name). */
export function currentProtocolDoc(): string {
  const names = readdirSync(PROTO_DIR)
    .filter((n) => n.endsWith(".proto"))
    .sort((a, b) =>
      a === "forwarder.proto" ? -1 : b === "forwarder.proto" ? 1 : a.localeCompare(b),
    );
  return renderProtocolDoc(
    names.map((n) => parseProto(`proto/icmpfwd/v1/${n}`, readFileSync(join(PROTO_DIR, n), "utf8"))),
  );
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const doc = currentProtocolDoc();
  if (process.argv.includes("--check")) {
    let committed = "";
    try {
      committed = readFileSync(DOC_PATH, "utf8");
    } catch {}
    if (committed !== doc) {
      process.stderr.write("docs/protocol.md is stale: run npm run docs:protocol\n");
      process.exit(1);
    }
  } else {
    writeFileSync(DOC_PATH, doc);
    process.stdout.write(`wrote ${DOC_PATH}\n`);
  }
}
