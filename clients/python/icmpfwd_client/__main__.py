"""python3 -m icmpfwd_client <policy> [--target T] [--token T] [--name N]"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import List, Optional

from . import policies
from .client import AuthError, Handler, Mode, run_policy


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m icmpfwd_client", description="Run an example icmpfwd policy.")
    p.add_argument("policy", choices=[*policies.SIMPLE, "every-nth"])
    p.add_argument("n", nargs="?", type=int, help="N for every-nth")
    p.add_argument("--target", default=os.environ.get("ICMPFWD_TARGET", "127.0.0.1:50051"))
    p.add_argument("--token", default=os.environ.get("ICMPFWD_TOKEN"))
    p.add_argument("--name", default=None)
    p.add_argument("--max-in-flight", type=int, default=0)
    p.add_argument("-v", "--verbose", action="store_true", help="log every verdict")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.policy == "every-nth":
        if args.n is None:
            p.error("every-nth needs N")
        handler: Handler = policies.every_nth(args.n)
    else:
        handler = policies.SIMPLE[args.policy]  # type: ignore[assignment]
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
            )
        )
    except AuthError as e:
        print(f"icmpfwd_client: authentication failed: {e}", file=sys.stderr)
        return 2
    print(summary.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
