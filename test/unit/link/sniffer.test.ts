import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ChannelEndpoint } from "../../../src/link/channel.js";
import { LINKTYPE_RAW, PcapngWriter } from "../../../src/link/pcapng.js";
import { SnifferEndpoint } from "../../../src/link/sniffer.js";
import { v4EchoReply, v4EchoRequest, v6EchoRequest } from "../netstack/header/vectors.js";

const dir = mkdtempSync(join(tmpdir(), "icmpfwd-sniffer-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const tempPath = (): string => join(dir, `capture-${files++}.pcapng`);

const T0 = 1_700_000_000_123_456_789n;

/** A fixed clock that ticks one nanosecond per reading. */
function clock(): () => bigint {
  let t = T0;
  return () => t++;
}

interface Block {
  type: number;
  body: Buffer;
}

/** Splits a little-endian pcapng file into blocks, checking both length fields of each. */
function readBlocks(file: Buffer): Block[] {
  const blocks: Block[] = [];
  let o = 0;
  while (o < file.length) {
    const type = file.readUInt32LE(o);
    const len = file.readUInt32LE(o + 4);
    expect(len % 4).toBe(0);
    expect(file.readUInt32LE(o + len - 4)).toBe(len);
    blocks.push({ type, body: file.subarray(o + 8, o + len - 4) });
    o += len;
  }
  expect(o).toBe(file.length);
  return blocks;
}

/** The options of a block body from `at`, as code → value. */
function readOptions(body: Buffer, at: number): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let o = at;
  while (o < body.length) {
    const code = body.readUInt16LE(o);
    const len = body.readUInt16LE(o + 2);
    if (code === 0) break;
    out.set(code, body.subarray(o + 4, o + 4 + len));
    o += 4 + ((len + 3) & ~3);
  }
  return out;
}

interface Packet {
  data: Buffer;
  timestampNs: bigint;
  flags: number;
}

function readPackets(path: string): Packet[] {
  return readBlocks(readFileSync(path))
    .filter((b) => b.type === 6)
    .map(({ body }) => {
      const captured = body.readUInt32LE(12);
      expect(body.readUInt32LE(16)).toBe(captured);
      const options = readOptions(body, 20 + ((captured + 3) & ~3));
      return {
        data: body.subarray(20, 20 + captured),
        timestampNs: (BigInt(body.readUInt32LE(4)) << 32n) | BigInt(body.readUInt32LE(8)),
        flags: options.get(2)?.readUInt32LE(0) ?? -1,
      };
    });
}

describe("PcapngWriter", () => {
  it("starts with a Section Header Block and one raw-IP interface with nanosecond timestamps", () => {
    const path = tempPath();
    PcapngWriter.open(path).close();
    const [shb, idb, ...rest] = readBlocks(readFileSync(path));
    expect(rest).toEqual([]);
    expect(shb.type).toBe(0x0a0d0d0a);
    expect(shb.body.readUInt32LE(0)).toBe(0x1a2b3c4d);
    expect([shb.body.readUInt16LE(4), shb.body.readUInt16LE(6)]).toEqual([1, 0]);
    expect(shb.body.readBigInt64LE(8)).toBe(-1n);
    expect(idb.type).toBe(1);
    expect(idb.body.readUInt16LE(0)).toBe(LINKTYPE_RAW);
    expect(idb.body.readUInt32LE(4)).toBe(0);
    expect(readOptions(idb.body, 8).get(9)).toEqual(Buffer.of(9));
  });

  it("writes one Enhanced Packet Block per packet, padded to 32 bits, with its direction flag", () => {
    const path = tempPath();
    const w = PcapngWriter.open(path);
    w.writePacket(Uint8Array.of(1, 2, 3, 4, 5), "inbound", T0);
    w.writePacket(Uint8Array.of(6), "outbound", T0 + (1n << 32n) + 7n);
    w.close();
    expect(readPackets(path)).toEqual([
      { data: Buffer.of(1, 2, 3, 4, 5), timestampNs: T0, flags: 1 },
      { data: Buffer.of(6), timestampNs: T0 + (1n << 32n) + 7n, flags: 2 },
    ]);
  });

  it("copies the packet at once, so the caller may reuse its buffer", () => {
    const path = tempPath();
    const w = PcapngWriter.open(path);
    const p = Uint8Array.of(1, 2, 3, 4);
    w.writePacket(p, "inbound", T0);
    p.fill(0);
    w.close();
    expect(readPackets(path)[0].data).toEqual(Buffer.of(1, 2, 3, 4));
  });

  it("holds packets in its buffer until flush()", () => {
    const path = tempPath();
    const w = PcapngWriter.open(path);
    const headerSize = statSync(path).size;
    w.writePacket(v4EchoRequest(), "inbound", T0);
    expect(statSync(path).size).toBe(headerSize);
    w.flush();
    expect(statSync(path).size).toBe(headerSize + 44 + 84);
    w.close();
  });

  it("flushes by itself shortly after the last packet", async () => {
    const path = tempPath();
    const w = PcapngWriter.open(path);
    const headerSize = statSync(path).size;
    w.writePacket(v4EchoRequest(), "inbound", T0);
    await new Promise((r) => setTimeout(r, 500));
    expect(statSync(path).size).toBe(headerSize + 44 + 84);
    w.close();
  });

  it("flushes by itself once about 64 KiB are buffered", () => {
    const path = tempPath();
    const w = PcapngWriter.open(path);
    const headerSize = statSync(path).size;
    const p = new Uint8Array(1000);
    for (let i = 0; i < 70; i++) w.writePacket(p, "outbound", T0);
    const written = statSync(path).size - headerSize;
    expect(written).toBeGreaterThan(60 * 1024);
    expect(written).toBeLessThanOrEqual(64 * 1024);
    w.close();
    expect(readPackets(path)).toHaveLength(70);
  });

  it("writes a packet larger than its buffer, in order", () => {
    const path = tempPath();
    const w = PcapngWriter.open(path);
    const big = new Uint8Array(65535).fill(7);
    w.writePacket(Uint8Array.of(1), "inbound", T0);
    w.writePacket(big, "inbound", T0 + 1n);
    w.writePacket(Uint8Array.of(2), "inbound", T0 + 2n);
    w.close();
    const got = readPackets(path);
    expect(got.map((p) => p.data.length)).toEqual([1, 65535, 1]);
    expect(got[1].data.every((b) => b === 7)).toBe(true);
  });

  it("ignores packets after close(), and close() is idempotent", () => {
    const path = tempPath();
    const w = PcapngWriter.open(path);
    w.close();
    w.writePacket(Uint8Array.of(1), "inbound", T0);
    w.close();
    expect(readPackets(path)).toEqual([]);
    expect(w.error).toBeNull();
  });
});

describe("SnifferEndpoint", () => {
  function setup(mtu = 1500): {
    path: string;
    channel: ChannelEndpoint;
    sniffer: SnifferEndpoint;
    delivered: Uint8Array[];
  } {
    const path = tempPath();
    const channel = new ChannelEndpoint(mtu);
    const sniffer = new SnifferEndpoint(channel, PcapngWriter.open(path), clock());
    const delivered: Uint8Array[] = [];
    sniffer.attach({ deliverNetworkPackets: (ps) => delivered.push(...ps) });
    return { path, channel, sniffer, delivered };
  }

  it("records delivered packets as inbound before the stack sees them", () => {
    const { path, channel, sniffer, delivered } = setup();
    sniffer.attach({
      deliverNetworkPackets: (ps) => {
        for (const p of ps) p.fill(0); // the stack owns the bytes and may rewrite them
        delivered.push(...ps);
      },
    });
    expect(channel.inject(v4EchoRequest(), v6EchoRequest())).toBe(true);
    sniffer.close();
    expect(delivered).toHaveLength(2);
    const got = readPackets(path);
    expect(got.map((p) => [p.flags, Buffer.from(p.data)])).toEqual([
      [1, Buffer.from(v4EchoRequest())],
      [1, Buffer.from(v6EchoRequest())],
    ]);
  });

  it("forwards delivered packets to the dispatcher unchanged and in order", () => {
    const { channel, sniffer, delivered } = setup();
    const a = v4EchoRequest();
    const b = v6EchoRequest();
    channel.inject(a, b);
    expect(delivered).toEqual([a, b]);
    expect(delivered[0]).toBe(a);
    sniffer.close();
  });

  it("records written packets as outbound and passes them to the link", () => {
    const { path, channel, sniffer } = setup();
    expect(sniffer.writePacket(v4EchoReply())).toBeNull();
    expect(channel.drain()).toEqual([v4EchoReply()]);
    sniffer.close();
    expect(readPackets(path).map((p) => p.flags)).toEqual([2]);
  });

  it("does not record a packet the link refused, and returns the link's error", () => {
    const { path, sniffer } = setup(64);
    expect(sniffer.writePacket(v4EchoReply())?.kind).toBe("tooBig");
    sniffer.close();
    expect(readPackets(path)).toEqual([]);
  });

  it("exposes the link's MTU", () => {
    const { sniffer } = setup(1280);
    expect(sniffer.mtu).toBe(1280);
    sniffer.close();
  });

  it("detaches the link when attached to null", () => {
    const { channel, sniffer } = setup();
    sniffer.attach(null);
    expect(channel.inject(v4EchoRequest())).toBe(false);
    sniffer.close();
  });

  it("closes the link and the capture on close(), once", () => {
    const { path, channel, sniffer } = setup();
    sniffer.writePacket(v4EchoReply());
    sniffer.close();
    sniffer.close();
    expect(channel.writePacket(v4EchoReply())?.kind).toBe("closed");
    expect(readPackets(path)).toHaveLength(1);
  });
});

const inCI = process.env.CI === "true" || process.env.CI === "1";
const missingTools = ["tshark", "tcpdump"].filter(
  (t) => spawnSync("sh", ["-c", `command -v ${t}`], { stdio: "ignore" }).status !== 0,
);

function describeWithTools(title: string, fn: () => void): void {
  if (missingTools.length === 0) {
    describe(title, fn);
    return;
  }
  const reason = `needs ${missingTools.join(" and ")} (apt-get install tshark tcpdump)`;
  if (inCI) {
    describe(title, () => {
      it("has its tools", () => {
        throw new Error(`missing in CI: ${reason}`);
      });
    });
    return;
  }
  describe.skip(`${title} (skipped: ${reason})`, fn);
}

describeWithTools("SnifferEndpoint captures read by tshark and tcpdump", () => {
  function capture(): string {
    const path = tempPath();
    const channel = new ChannelEndpoint();
    const sniffer = new SnifferEndpoint(channel, PcapngWriter.open(path), clock());
    sniffer.attach({ deliverNetworkPackets: () => {} });
    channel.inject(v4EchoRequest(), v6EchoRequest());
    expect(sniffer.writePacket(v4EchoReply())).toBeNull();
    sniffer.close();
    return path;
  }

  it("shows each packet once, with its direction, in tshark", () => {
    const path = capture();
    // tshark 4.x names the epb_flags direction bits frame.packet_flags_direction.
    const r = spawnSync(
      "tshark",
      [
        "-r",
        path,
        "-T",
        "fields",
        "-E",
        "separator=,",
        "-e",
        "frame.number",
        "-e",
        "frame.packet_flags_direction",
        "-e",
        "frame.time_epoch",
        "-e",
        "ip.src",
        "-e",
        "ipv6.src",
        "-e",
        "icmp.type",
        "-e",
        "icmpv6.type",
      ],
      { encoding: "utf8" },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim().split("\n")).toEqual([
      "1,0x00000001,1700000000.123456789,198.18.0.1,,8,",
      "2,0x00000001,1700000000.123456789,,fd00:9::1,,128",
      "3,0x00000002,1700000000.123456790,198.18.0.2,,0,",
    ]);
  });

  it("is read by tcpdump with nanosecond timestamps", () => {
    const path = capture();
    const r = spawnSync("tcpdump", ["-r", path, "-nn", "-tt", "--time-stamp-precision=nano"], {
      encoding: "utf8",
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain("link-type RAW");
    const lines = r.stdout.trim().split("\n");
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(
      /^1700000000\.123456789 IP 198\.18\.0\.1 > 198\.18\.0\.2: ICMP echo request, id 3862, seq 1/,
    );
    expect(lines[1]).toMatch(/IP6 fd00:9::1 > fd00:9::2: ICMP6, echo request, id 5114, seq 1/);
    expect(lines[2]).toMatch(
      /^1700000000\.123456790 IP 198\.18\.0\.2 > 198\.18\.0\.1: ICMP echo reply, id 3862, seq 1/,
    );
  });
});
