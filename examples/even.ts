import { connect } from "@icmpfwd/client";

const ac = new AbortController();
process.on("SIGINT", () => ac.abort());
const client = connect({
  target: process.argv[2], // else $ICMPFWD_TARGET, else 127.0.0.1:50051
  signal: ac.signal,
  handler: (req) => (req.sequence % 2 === 0 ? "reply" : "consume"),
});
await client.done;
console.log(client.stats.decided);
