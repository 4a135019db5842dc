"""``python -m jubako.runtime proxy|worker ...``: the processes ``jubako serve`` and the
operator's pods run (same flags and environment variables as ``jubako runtime``)."""

from __future__ import annotations

import argparse
import os
import sys

from jubako.errors import JubakoError


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m jubako.runtime")
    sub = ap.add_subparsers(dest="role", required=True)
    p = sub.add_parser("proxy")
    p.add_argument("--bento", default=os.environ.get("JUBAKO_BENTO"))
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=int(os.environ.get("JUBAKO_PORT", "3000")))
    p.add_argument("--workers", default=os.environ.get("JUBAKO_WORKERS"))
    w = sub.add_parser("worker")
    w.add_argument("--bento", default=os.environ.get("JUBAKO_BENTO"))
    w.add_argument("--host", default="0.0.0.0")
    w.add_argument("--port", type=int, default=int(os.environ.get("JUBAKO_WORKER_PORT", "7000")))
    w.add_argument("--http-port", type=int, default=int(os.environ.get("JUBAKO_WORKER_HTTP_PORT", "7001")))
    args = ap.parse_args(argv)
    try:
        if not args.bento:
            raise JubakoError("--bento (or JUBAKO_BENTO) is required")
        if args.role == "proxy":
            from .proxy import run
            from .settings import parse_workers

            run(args.bento, args.port, parse_workers(args.workers or ""), args.host)
        else:
            from .worker import run as run_worker

            run_worker(args.bento, args.port, args.http_port, args.host)
    except JubakoError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
