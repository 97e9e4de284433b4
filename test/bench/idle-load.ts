/**
 * A child process of the footprint bench (footprint.ts), run inside its namespace: holds idle
 * load on a running `icmpfwd serve` so that the daemon's RSS can be read with it.
 *   idle-load.ts sessions N TARGET     N Connect sessions (each its own connection, a Hello in
 *                                      decide mode with a unique client name), never answering
 *   idle-load.ts connections N TARGET  N TCP connections that send nothing
 * Prints "ready N" once every session is welcomed / every connection is open, then waits for
 * SIGTERM. Bounded: gives up (exit 1) after 120 s.
 */
import { type Socket, connect as tcpConnect } from "node:net";
import { Client, credentials } from "@grpc/grpc-js";
import { ClientMessage, Mode, ServerMessage } from "../../src/gen/icmpfwd/v1/forwarder.js";

const [kind, countText, target] = process.argv.slice(2);
const count = Number(countText);
setTimeout(() => {
  console.error(`idle-load: not ready after 120 s`);
  process.exit(1);
}, 120_000).unref();

async function sessions(n: number): Promise<() => void> {
  const clients: Client[] = [];
  let welcomed = 0;
  await new Promise<void>((resolve, reject) => {
    for (let i = 0; i < n; i++) {
      // A local subchannel pool: every session on a connection of its own, as separate
      // policy-client processes would be.
      const c = new Client(target, credentials.createInsecure(), {
        "grpc.use_local_subchannel_pool": 1,
      });
      clients.push(c);
      const call = c.makeBidiStreamRequest(
        "/icmpfwd.v1.EchoForwarder/Connect",
        (b: Buffer) => b,
        (b: Buffer) => b,
      );
      call.on("data", (b: Buffer) => {
        if (ServerMessage.decode(b).message?.$case === "welcome" && ++welcomed === n) resolve();
      });
      call.on("error", reject);
      call.write(
        Buffer.from(
          ClientMessage.encode(
            ClientMessage.fromPartial({
              message: {
                $case: "hello",
                value: { protocolVersion: 1, clientName: `idle-${i}`, mode: Mode.MODE_DECIDE },
              },
            }),
          ).finish(),
        ),
      );
    }
  });
  return () => {
    for (const c of clients) c.close();
  };
}

async function connections(n: number): Promise<() => void> {
  const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.split(":").pop())];
  const sockets: Socket[] = [];
  // A few hundred at a time: the listen backlog stays small.
  for (let i = 0; i < n; i += 200) {
    const batch = Array.from({ length: Math.min(200, n - i) }, () => {
      const s = tcpConnect({ host, port });
      sockets.push(s);
      return new Promise<void>((resolve, reject) => {
        s.once("connect", resolve);
        s.once("error", reject);
      });
    });
    await Promise.all(batch);
  }
  for (const s of sockets) s.on("error", () => {});
  return () => {
    for (const s of sockets) s.destroy();
  };
}

const close = await (kind === "sessions" ? sessions(count) : connections(count));
console.log(`ready ${count}`);
process.once("SIGTERM", () => {
  close();
  process.exit(0);
});
