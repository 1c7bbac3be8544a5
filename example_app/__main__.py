"""Run Acme Monitoring on its own: ``python -m example_app [--host H] [--port P]``.

Settings come from the environment (``ACME_*``, ``PDCONNECT_*``); see docs/example-app.md.
For the demo beside the PagerDuty sandbox, use ``python3 dev.py demo`` instead.
"""

from __future__ import annotations

import argparse
import sys

from werkzeug.serving import run_simple

from example_app import create_app
from pdconnect.errors import ConfigError


def main() -> None:
    parser = argparse.ArgumentParser(description="Run Acme Monitoring.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    try:
        app = create_app()
    except ConfigError as exc:
        sys.exit(f"acme: {exc}")
    print(f"Acme Monitoring on http://{args.host}:{args.port}", flush=True)
    run_simple(args.host, args.port, app, threaded=True)


if __name__ == "__main__":
    main()
