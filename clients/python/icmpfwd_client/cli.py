"""icmpfwd-policy-py (also `python3 -m icmpfwd_client`): the policy CLI of docs/cli-contract.md."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import List, NoReturn, Optional

from . import logs, policies
from .client import AuthError, Filter, Handler, HelloRejected, Mode, Tls, TlsError, run_policy
from .rtt import RttMeter
from .targets import parse_targets

PROG = "icmpfwd-policy-py"
POLICIES = ["reply-all", "drop-all", "even-reply", "every-nth", "per-source-rate-limit", "proxy-latency", "observe-log"]

# Exit codes of the contract.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("icmpfwd_client.cli")


class UsageError(Exception):
    """A usage error: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _number(minimum: float, integer: bool):  # type: ignore[no-untyped-def]
    def parse(v: str) -> float:
        try:
            n: float = int(v) if integer else float(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if integer else 'a number'}: {v!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"{v} is below {minimum:g}")
        return n

    parse.__name__ = "integer" if integer else "number"
    return parse


def _targets(v: str) -> str:
    try:
        parse_targets(v)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return v


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Run an example icmpfwd policy (docs/cli-contract.md).", allow_abbrev=False)
    p.add_argument("policy", choices=POLICIES, metavar="policy", help=" | ".join(POLICIES))
    p.add_argument(
        "--target", type=_targets, default=os.environ.get("ICMPFWD_TARGET") or "127.0.0.1:50051",
        help="comma-separated host:port, [v6addr]:port, unix:/path, dns:///name:port "
        "(env ICMPFWD_TARGET, default 127.0.0.1:50051)",
    )
    p.add_argument("--token", default=os.environ.get("ICMPFWD_TOKEN") or None, help="bearer token (env ICMPFWD_TOKEN)")
    p.add_argument("--tls", action="store_true", help="use TLS, trusting the system's CAs")
    p.add_argument("--tls-ca", metavar="PEM", help="use TLS, trusting this CA")
    p.add_argument("--tls-cert", metavar="PEM", help="mTLS client certificate (with --tls-key)")
    p.add_argument("--tls-key", metavar="PEM", help="its key")
    p.add_argument("--tls-server-name", metavar="NAME", help="the name checked in the server certificate")
    p.add_argument("--name", help="client name in Hello (default icmpfwd-policy/<policy>)")
    p.add_argument("--family", choices=["ipv4", "ipv6"], help="only requests of this family (Hello filter)")
    p.add_argument("--max-in-flight", type=_number(0, True), default=0, help="Hello.max_in_flight (default 0)")
    p.add_argument("--n", type=_number(1, True), default=2, help="every-nth: reply to every nth request (default 2)")
    p.add_argument("--rate", type=_number(0, False), default=1.0, help="per-source-rate-limit: tokens/s (default 1)")
    p.add_argument("--burst", type=_number(0, False), default=5.0, help="per-source-rate-limit: bucket size (default 5)")
    p.add_argument(
        "--delay-ms", type=_number(0, True), default=100,
        help="proxy-latency: delay of the synthetic reply (default 100; with --measure: the fallback)",
    )
    p.add_argument("--measure", action="store_true", help="proxy-latency: delay by this host's measured RTT")
    p.add_argument("--rtt-cache-ms", type=_number(0, False), default=5000.0, help="--measure: reuse a measurement this long")
    p.add_argument("--max-pings", type=_number(1, True), default=4, help="--measure: pings running at once (default 4)")
    p.add_argument(
        "--resolve-interval-ms", type=_number(1000, True), default=30000,
        help="how often a dns:/// target is re-resolved (default 30000)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log every verdict")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = parser().parse_args(argv)
        if (args.tls_cert is None) != (args.tls_key is None):
            raise UsageError("--tls-cert and --tls-key go together")
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_USAGE
    logs.setup(args.verbose)
    meter: Optional[RttMeter] = None
    payload_bytes = 0
    if args.policy == "every-nth":
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
    if args.tls or args.tls_ca or args.tls_cert:
        try:
            tls = Tls.from_files(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
        except (OSError, ValueError) as e:
            log.error("cannot read the TLS files: %s", e)
            return EXIT_FAILED
    try:
        summary = asyncio.run(
            run_policy(
                handler,
                target=args.target,
                name=args.name or f"icmpfwd-policy/{args.policy}",
                token=args.token,
                max_in_flight=args.max_in_flight,
                mode=Mode.OBSERVE if args.policy == "observe-log" else Mode.DECIDE,
                payload_bytes=payload_bytes,
                tls=tls,
                filter=None if args.family is None else Filter(family=4 if args.family == "ipv4" else 6),
                resolve_interval_ms=args.resolve_interval_ms,
            )
        )
    except AuthError as e:
        log.error("authentication failed (check --token): %s", e)
        return EXIT_USAGE
    except (HelloRejected, TlsError) as e:
        log.error("%s", e)
        return EXIT_FAILED
    line = summary.line(args.policy)
    if meter is not None:
        s = meter.stats
        line += f" pings={s.pings} shared={s.shared} ping_failures={s.failures} loops={s.loops}"
    print(line, flush=True)
    return EXIT_OK
