"""The one-line error for a Python without grpcio/protobuf (instead of a bare ModuleNotFoundError)."""

from __future__ import annotations

MISSING = (
    "icmpfwd_client needs grpcio and protobuf ({missing} is missing): on Debian's /usr/bin/python3 "
    "`apt-get install python3-grpcio python3-protobuf` (a venv then needs --system-site-packages), "
    "or `pip install grpcio protobuf`"
)


def require() -> None:
    """Raises ImportError with one line naming both remedies when grpc or protobuf is missing."""
    for module in ("grpc", "google.protobuf"):
        try:
            __import__(module)
        except ImportError:
            raise ImportError(MISSING.format(missing=module), name=module) from None
