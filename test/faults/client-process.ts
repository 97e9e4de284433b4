/**
 * The fault-injection clients in their own process (forked by runner.ts with tsx), so they use
 * the second core and the service's RSS is the service's alone. Messages from the parent:
 * start → (ready), faults on/off, finish → (tally), then exit. The process ends by itself when
 * the parent goes away or after `maxMs`.
 */
import { type ClientTally, emptyTally, PolicyClient, prng, TcpProxy } from "./clients.js";

export interface ClientsStart {
  type: "start";
  address: string;
  clients: number;
  deadlineMs: number;
  chaosEveryMs: number;
  seed: number;
  /** Hard bound on this process's life. */
  maxMs: number;
}
export type ParentMessage =
  | ClientsStart
  | { type: "faults"; on: boolean }
  | { type: "finish"; timeoutMs: number };
export type ChildMessage = { type: "ready" } | { type: "tally"; tally: ClientTally };

const FAULTS = ["kill", "reset", "restart", "drain", "halfClose"] as const;

const send = (m: ChildMessage): void => {
  process.send?.(m);
};

let clients: PolicyClient[] = [];
let proxies: TcpProxy[] = [];
let chaos: ReturnType<typeof setInterval> | null = null;
const tally = emptyTally();
let rng = prng(1);
let options: ClientsStart | null = null;

async function start(o: ClientsStart): Promise<void> {
  options = o;
  rng = prng(o.seed);
  setTimeout(() => process.exit(3), o.maxMs).unref();
  for (let i = 0; i <= o.clients; i++) {
    const stall = i === o.clients;
    const proxy = await TcpProxy.start(o.address);
    proxies.push(proxy);
    clients.push(
      new PolicyClient({
        name: stall ? "stalled" : `chaos-${i}`,
        proxy,
        stall,
        maxInFlight: stall ? 32 : 4096,
        deadlineMs: o.deadlineMs,
        rng: prng(o.seed * 31 + i),
        tally,
      }),
    );
  }
  for (const c of clients) c.open();
  send({ type: "ready" });
}

function faults(on: boolean): void {
  if (chaos !== null) clearInterval(chaos);
  chaos = null;
  // Faults off is the quiet tail: every client, the stalled one too, decides at once.
  for (const c of clients) c.calm = !on;
  if (!on || options === null) return;
  // The last client stalls for the whole run; the others take the faults.
  const deciders = clients.slice(0, -1);
  chaos = setInterval(() => {
    const c = deciders[Math.floor(rng() * deciders.length)];
    const f = FAULTS[Math.floor(rng() * FAULTS.length)];
    tally.faults[f] = (tally.faults[f] ?? 0) + 1;
    c[f]();
  }, options.chaosEveryMs);
}

async function finish(timeoutMs: number): Promise<void> {
  if (chaos !== null) clearInterval(chaos);
  await Promise.all(clients.map((c) => c.finish(timeoutMs)));
  for (const p of proxies) await p.close();
  clients = [];
  proxies = [];
  send({ type: "tally", tally });
}

process.on("message", (m: ParentMessage) => {
  if (m.type === "start") void start(m);
  else if (m.type === "faults") faults(m.on);
  else if (m.type === "finish") void finish(m.timeoutMs);
});
process.on("disconnect", () => process.exit(0));
