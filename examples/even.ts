/** A ten-line policy (clients/README.md): reply to even sequences, consume odd ones. */
import { connect } from "../clients/ts/src/index.js";

const ac = new AbortController();
process.on("SIGINT", () => ac.abort());
const client = connect({
  target: process.argv[2] ?? "127.0.0.1:50051",
  signal: ac.signal,
  handler: (req) => (req.sequence % 2 === 0 ? "reply" : "consume"),
});
await client.done;
console.log(client.stats.decided);
