import { connect, createServer, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { peerUid } from "../../../src/service/peer-uid.js";

/** The server's view of one loopback connection from this process. */
async function accepted(host: string, family?: number): Promise<{ server: Socket; close(): void }> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, family === undefined ? host : "::", r));
  const port = (srv.address() as { port: number }).port;
  const got = new Promise<Socket>((r) => srv.once("connection", r));
  const client = connect({ port, host, family });
  const server = await got;
  return {
    server,
    close: () => {
      client.destroy();
      server.destroy();
      srv.close();
    },
  };
}

const TCP = [
  "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
  "   0: 0100007F:C350 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0",
  "   1: 0100007F:9C40 0100007F:C350 01 00000000:00000000 00:00000000 00000000 65534        0 2 1 0 20 4 30 10 -1",
].join("\n");

describe("peerUid", () => {
  it("finds the uid of the row whose local end is the peer and whose remote end is us", () => {
    const read = (path: string): string => (path === "/proc/net/tcp" ? TCP : "");
    const ends = {
      remoteAddress: "127.0.0.1",
      remotePort: 0x9c40,
      localAddress: "127.0.0.1",
      localPort: 50000,
    };
    expect(peerUid(ends, read)).toBe(65534);
    // The listening row (remote 0.0.0.0:0) is not a connection to us.
    expect(peerUid({ ...ends, remotePort: 0x9c41 }, read)).toBeNull();
  });

  it("is null without both ends", () => {
    expect(peerUid({ localAddress: "127.0.0.1", localPort: 1 })).toBeNull();
  });

  for (const [name, host, family] of [
    ["IPv4", "127.0.0.1", undefined],
    ["IPv6", "::1", undefined],
    ["IPv4 to a dual-stack listener (::ffff:127.0.0.1)", "127.0.0.1", 4],
  ] as const) {
    it(`names this process's own uid for a real ${name} loopback connection`, async () => {
      const c = await accepted(host, family);
      try {
        const s = c.server;
        expect(
          peerUid({
            remoteAddress: s.remoteAddress,
            remotePort: s.remotePort,
            localAddress: s.localAddress,
            localPort: s.localPort,
          }),
        ).toBe(process.getuid?.());
      } finally {
        c.close();
      }
    });
  }
});
