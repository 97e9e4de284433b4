#!/bin/sh
# The local cluster's pingers (docker-compose.yml). Each shares one replica's network namespace
# (network_mode "service:icmpfwd-1" / "service:icmpfwd-2"), so its pings go through that
# replica's TUN: one ping flow to 198.18.0.2 (IPv4) and one to fd00:1::2 (IPv6) per round.
# `icmpfwd sessions` (an admin RPC) authenticates with ICMPFWD_TOKEN from the environment.
#
#   PINGER_SESSIONS  decide sessions to wait for before the first round (default 2)
#   PINGER_WAIT      seconds to wait for them at most (default 120; then ping anyway)
#   PINGER_COUNT     Echo Requests per flow and round (default 6)
#   PINGER_ROUNDS    rounds, 0 = forever (default 0)
#   PINGER_PAUSE     seconds between rounds (default 10)
set -u
sessions=${PINGER_SESSIONS:-2}
wait_s=${PINGER_WAIT:-120}
count=${PINGER_COUNT:-6}
rounds=${PINGER_ROUNDS:-0}
pause=${PINGER_PAUSE:-10}

decide_sessions() {
  icmpfwd sessions --json 2>/dev/null |
    node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>{let n=0;for(const l of s.split("\n"))if(l.trim())for(const x of [JSON.parse(l)].flat())if(x.mode==="decide")n++;console.log(n)})' 2>/dev/null ||
    echo 0
}

start=$(date +%s)
while :; do
  n=$(decide_sessions)
  [ "$n" -ge "$sessions" ] && break
  if [ $(($(date +%s) - start)) -ge "$wait_s" ]; then
    echo "pinger: only $n of $sessions decide sessions after ${wait_s}s; pinging anyway"
    break
  fi
  sleep 1
done
echo "pinger: $n decide sessions"

round=0
while [ "$rounds" -eq 0 ] || [ "$round" -lt "$rounds" ]; do
  round=$((round + 1))
  echo "pinger: round $round"
  ping -n -c "$count" -i 0.5 -W 1 198.18.0.2
  ping -6 -n -c "$count" -i 0.5 -W 1 fd00:1::2
  echo "pinger: round $round done"
  if [ "$rounds" -eq 0 ] || [ "$round" -lt "$rounds" ]; then sleep "$pause"; fi
done
