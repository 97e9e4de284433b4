/**
 * The two stacks the differential test feeds in memory: icmpfwd's Stack on the channel link,
 * and gVisor's netstack in test/differential/gvisor-peer (built here in GOPATH mode against
 * Debian's golang-gvisor-gvisor-dev), both fresh for every input and of the same shape
 * (shape.ts). The TUN mode (tun.ts) reuses the builds.
 */
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ChannelEndpoint } from "../../src/link/channel.js";
import { peerShapeArgs, shapedStack } from "./shape.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const GOPATH = "/usr/share/gocode";
const GVISOR_SRC = join(GOPATH, "src/gvisor.dev/gvisor/pkg/tcpip");
const INSTALL = "apt-get install -y golang-go golang-gvisor-gvisor-dev";

/** Whether Go and Debian's gVisor sources are here; the reason when not. */
export function peerPrerequisite(): { ok: boolean; reason: string } {
  if (spawnSync("sh", ["-c", "command -v go"], { stdio: "ignore" }).status !== 0)
    return { ok: false, reason: `needs Go (${INSTALL})` };
  if (!existsSync(GVISOR_SRC))
    return { ok: false, reason: `needs gVisor's sources in ${GVISOR_SRC} (${INSTALL})` };
  return { ok: true, reason: "" };
}

/** Where the programs' shared package lives (icmpfwd.test/framed), a second GOPATH entry. */
const OWN_GOPATH = join(HERE, "go");

/** Builds the Go program in test/differential/`name` (GOPATH mode); returns the binary's path. */
export function buildGo(name: "gvisor-peer" | "tun-tap"): string {
  const dir = mkdtempSync(join(tmpdir(), `icmpfwd-${name}-`));
  const binary = join(dir, name);
  const r = spawnSync("go", ["build", "-o", binary, join(HERE, name, "main.go")], {
    encoding: "utf8",
    env: {
      ...process.env,
      GO111MODULE: "off",
      GOPATH: `${GOPATH}:${OWN_GOPATH}`,
      GOCACHE: join(dir, "cache"),
      GOFLAGS: "",
    },
  });
  if (r.status !== 0)
    throw new Error(`cannot build ${name}: ${(r.stderr || String(r.error)).trim()}`);
  return binary;
}

/** Builds the gVisor peer; returns the binary's path. */
export function buildPeer(): string {
  return buildGo("gvisor-peer");
}

/** The gVisor peer process: inputs written in order, answers read back in order. */
export class GvisorPeer {
  private readonly child: ChildProcessWithoutNullStreams;
  private buf = Buffer.alloc(0);
  private readonly waiting: Array<(packets: Uint8Array[]) => void> = [];
  private stderr = "";

  constructor(binary: string) {
    this.child = spawn(binary, peerShapeArgs(), { stdio: ["pipe", "pipe", "pipe"] });
    this.child.stdout.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.parse();
    });
    this.child.stderr.on("data", (d: Buffer) => {
      this.stderr += d.toString();
    });
    this.child.on("exit", (code) => {
      if (this.waiting.length > 0)
        throw new Error(`gVisor peer exited (${code}) with inputs pending: ${this.stderr}`);
    });
  }

  private parse(): void {
    for (;;) {
      if (this.buf.length < 4) return;
      const count = this.buf.readUInt32BE(0);
      let off = 4;
      const packets: Uint8Array[] = [];
      for (let i = 0; i < count; i++) {
        if (this.buf.length < off + 4) return;
        const n = this.buf.readUInt32BE(off);
        if (this.buf.length < off + 4 + n) return;
        packets.push(new Uint8Array(this.buf.subarray(off + 4, off + 4 + n)));
        off += 4 + n;
      }
      this.buf = this.buf.subarray(off);
      this.waiting.shift()?.(packets);
    }
  }

  /** Feeds one input (its packets, one at a time, to a fresh stack); resolves with its output. */
  feed(packets: readonly Uint8Array[]): Promise<Uint8Array[]> {
    const parts: Buffer[] = [u32(packets.length)];
    for (const p of packets) parts.push(u32(p.length), Buffer.from(p));
    this.child.stdin.write(Buffer.concat(parts));
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  async close(): Promise<void> {
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.stdin.end();
    await exited;
  }
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
}

/** icmpfwd's answer to one input: a fresh shaped Stack, each packet injected, every write read. */
export function icmpfwdOutput(packets: readonly Uint8Array[]): Uint8Array[] {
  const link = new ChannelEndpoint(1500);
  const stack = shapedStack(link);
  const out: Uint8Array[] = [];
  for (const p of packets) {
    // The stack may build a reply in place over the injected bytes: give it a copy.
    link.inject(p.slice());
    out.push(...link.drain().map((x) => x.slice()));
  }
  stack.close();
  return out;
}
