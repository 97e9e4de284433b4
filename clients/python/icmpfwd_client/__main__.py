"""python3 -m icmpfwd_client <policy> [--target T] [--token T] [--tls-ca F] [--name N] ..."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import List, Optional

from . import policies
from .client import AuthError, Filter, Handler, Mode, Tls, TlsError, run_policy
from .rtt import RttMeter

POLICIES = [*policies.SIMPLE, "every-nth", "per-source-rate-limit", "proxy-latency"]


def _non_negative(v: str) -> float:
    try:
        n = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {v}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"not a non-negative number: {v}")
    return n


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m icmpfwd_client", description="Run an example icmpfwd policy.")
    p.add_argument("policy", choices=POLICIES)
    p.add_argument("n", nargs="?", type=int, help="N for every-nth")
    p.add_argument("--target", default=os.environ.get("ICMPFWD_TARGET", "127.0.0.1:50051"))
    p.add_argument("--token", default=os.environ.get("ICMPFWD_TOKEN"))
    p.add_argument("--name", default=None)
    p.add_argument("--max-in-flight", type=int, default=0)
    p.add_argument("--family", choices=["ipv4", "ipv6"], help="only requests of this family (Hello filter)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every verdict")
    g = p.add_argument_group("per-source-rate-limit")
    g.add_argument("--rate", type=_non_negative, default=1.0, help="tokens per second per source (default 1)")
    g.add_argument("--burst", type=_non_negative, default=5.0, help="bucket size (default 5)")
    g = p.add_argument_group("proxy-latency")
    g.add_argument(
        "--delay-ms", type=_non_negative, default=100.0,
        help="delay before the synthetic reply (default 100; with --measure: the fallback)",
    )
    g.add_argument(
        "--measure", action="store_true",
        help="delay by the RTT this host's ping measures to the destination",
    )
    g.add_argument("--rtt-cache-ms", type=_non_negative, default=5000.0, help="reuse a measurement this long")
    g.add_argument("--max-pings", type=int, default=4, help="pings running at once (default 4)")
    g = p.add_argument_group("TLS (the service's --tls-cert/--tls-key, and --tls-client-ca for mTLS)")
    g.add_argument("--tls", action="store_true", help="use TLS, trusting the system's CAs")
    g.add_argument("--tls-ca", metavar="PEM", help="use TLS, trusting this CA")
    g.add_argument("--tls-cert", metavar="PEM", help="mTLS: the client certificate")
    g.add_argument("--tls-key", metavar="PEM", help="mTLS: the client certificate's key")
    g.add_argument("--tls-server-name", metavar="NAME", help="the name to check in the server certificate")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    meter: Optional[RttMeter] = None
    payload_bytes = 0
    if args.policy == "every-nth":
        if args.n is None:
            p.error("every-nth needs N")
        handler: Handler = policies.every_nth(args.n)
    elif args.policy == "per-source-rate-limit":
        handler = policies.per_source_rate_limit(args.rate, args.burst)
    elif args.policy == "proxy-latency":
        if args.measure:
            meter = RttMeter(cache_ms=args.rtt_cache_ms, max_concurrent=args.max_pings)
            payload_bytes = policies.MEASURE_PAYLOAD_BYTES
        handler = policies.proxy_latency(args.delay_ms, meter)
    else:
        handler = policies.SIMPLE[args.policy]  # type: ignore[assignment]
    tls: Optional[Tls] = None
    if args.tls or args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name:
        try:
            tls = Tls.from_files(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
        except (OSError, ValueError) as e:
            p.error(str(e))
    mode = Mode.OBSERVE if args.policy == "observe-log" else Mode.DECIDE
    try:
        summary = asyncio.run(
            run_policy(
                handler,
                target=args.target,
                name=args.name or f"python-{args.policy}",
                token=args.token,
                max_in_flight=args.max_in_flight,
                mode=mode,
                payload_bytes=payload_bytes,
                tls=tls,
                filter=None if args.family is None else Filter(family=4 if args.family == "ipv4" else 6),
            )
        )
    except AuthError as e:
        print(f"icmpfwd_client: authentication failed: {e}", file=sys.stderr)
        return 2
    except TlsError as e:
        print(f"icmpfwd_client: {e}", file=sys.stderr)
        return 2
    line = summary.line()
    if meter is not None:
        s = meter.stats
        line += f" pings={s.pings} shared={s.shared} ping_failures={s.failures} loops={s.loops}"
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
