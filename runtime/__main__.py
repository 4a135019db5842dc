"""``python -m jubako.runtime proxy|worker ...``: the processes ``jubako serve`` and the
operator's pods run (same flags, environment variables and config file as ``jubako runtime``)."""

from __future__ import annotations

import argparse
import sys

from jubako.errors import JubakoError


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m jubako.runtime")
    sub = ap.add_subparsers(dest="role", required=True)
    p = sub.add_parser("proxy")
    w = sub.add_parser("worker")
    # no defaults here: a flag not given leaves the value to the environment, the config
    # file and the settings' own defaults (jubako/runtime_settings.py)
    for parser in (p, w):
        parser.add_argument("--bento")
        parser.add_argument("--host", default="0.0.0.0")
        parser.add_argument("--port", type=int)
        parser.add_argument("--config")
    p.add_argument("--workers")
    w.add_argument("--http-port", type=int)
    args = ap.parse_args(argv)
    from . import launch

    try:
        if args.role == "proxy":
            launch.proxy(args.config, args.host, bento=args.bento, port=args.port, workers=args.workers)
        else:
            launch.worker(args.config, args.host, bento=args.bento, worker_port=args.port,
                          worker_http_port=args.http_port)
    except JubakoError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
