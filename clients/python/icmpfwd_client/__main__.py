"""`python3 -m icmpfwd_client <policy> [flags]` and the `icmpfwd-policy-py` console script."""

from __future__ import annotations

import sys


def entry() -> None:
    """Without grpcio/protobuf: one line naming the remedies and exit 1, not a traceback."""
    from . import deps

    try:
        deps.require()
    except ImportError as e:
        print(f"icmpfwd-policy-py: {e}", file=sys.stderr)
        sys.exit(1)
    from .cli import main

    sys.exit(main())


if __name__ == "__main__":
    entry()
