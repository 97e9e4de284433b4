/**
 * A child process spoken to in big-endian uint32 frames over stdin/stdout, one request at a
 * time (the TUN mode's gVisor peer and tun-tap). Its stderr is kept for the error message when
 * it dies.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";

export class FramedProcess {
  private readonly child: ChildProcessWithoutNullStreams;
  private buf: Buffer = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private stderr = "";
  private exited: string | null = null;
  private readonly exit: Promise<void>;

  constructor(
    readonly what: string,
    cmd: string,
    args: readonly string[],
  ) {
    this.child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    this.child.stdout.on("data", (d: Buffer) => {
      this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    this.child.stderr.on("data", (d: Buffer) => {
      this.stderr += d.toString();
    });
    this.exit = new Promise((resolve) => {
      this.child.on("exit", (code, signal) => {
        this.exited = `${this.what} exited (${code ?? signal}): ${this.stderr.trim()}`;
        this.wake?.();
        resolve();
      });
    });
  }

  /** Waits for more output; throws when the process died or the deadline passed. */
  private async more(deadline: number): Promise<void> {
    if (this.exited !== null) throw new Error(this.exited);
    if (Date.now() > deadline) throw new Error(`${this.what}: no answer in time`);
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 200);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
    this.wake = null;
  }

  /** Waits until `n` bytes are buffered and takes them. */
  async take(n: number, timeoutMs = 30_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) await this.more(deadline);
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  async u32(): Promise<number> {
    return (await this.take(4)).readUInt32BE(0);
  }

  /** A list of packets: count, then count × (length, bytes). */
  async packets(): Promise<Uint8Array[]> {
    const count = await this.u32();
    const out: Uint8Array[] = [];
    for (let i = 0; i < count; i++) out.push(new Uint8Array(await this.take(await this.u32())));
    return out;
  }

  /** Reads text until `marker` appears (a start-up line such as READY). */
  async line(marker: string, timeoutMs = 15_000): Promise<void> {
    const m = Buffer.from(`${marker}\n`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const at = this.buf.indexOf(m);
      if (at >= 0) {
        this.buf = this.buf.subarray(at + m.length);
        return;
      }
      await this.more(deadline);
    }
  }

  write(b: Buffer): void {
    this.child.stdin.write(b);
  }

  async close(): Promise<void> {
    if (this.exited === null) {
      this.child.stdin.end();
      const t = setTimeout(() => this.child.kill("SIGKILL"), 3000);
      await this.exit;
      clearTimeout(t);
    }
  }
}

export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
}

/** Frames a packet list: count, then count × (length, bytes). */
export function framePackets(packets: readonly Uint8Array[]): Buffer {
  const parts: Buffer[] = [u32(packets.length)];
  for (const p of packets) parts.push(u32(p.length), Buffer.from(p));
  return Buffer.concat(parts);
}
