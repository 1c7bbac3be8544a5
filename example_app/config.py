"""Acme Monitoring's settings: from the environment, with safe demo defaults.

``ACME_*`` variables configure the app; ``PDCONNECT_*`` variables are passed to pdconnect
as they are (see the Flask guide). In production (``ACME_ENV=production``) the app refuses to
start with a missing, short or demo secret key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

DEMO_SECRET = "acme-demo-secret-do-not-use-in-production"  # noqa: S105 -- refused in production
_INSECURE = {DEMO_SECRET, "changeme", "secret", "dev", "development"}


class InsecureConfiguration(SystemExit):
    """Raised at start-up when production settings are unsafe."""


def load_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read settings from ``environ`` (the process environment by default)."""
    env = os.environ if environ is None else environ
    production = env.get("ACME_ENV", "development").lower() in ("production", "prod")
    secret = env.get("ACME_SECRET_KEY") or (None if production else DEMO_SECRET)
    if production and (not secret or secret in _INSECURE or len(secret) < 32):
        raise InsecureConfiguration(
            "refusing to start: ACME_ENV=production needs ACME_SECRET_KEY set to a random value of 32+ characters"
        )
    config: dict[str, Any] = {
        "SECRET_KEY": secret,
        "ACME_PRODUCTION": production,
        "ACME_DATABASE_URL": env.get("ACME_DATABASE_URL"),
        "ACME_BASE_URL": env.get("ACME_BASE_URL", "http://127.0.0.1:5000").rstrip("/"),
        "ACME_REGION": env.get("ACME_REGION", "eu-west-1"),
        "ACME_SCHEDULER": env.get("ACME_SCHEDULER", "on") != "off",
        "ACME_WORKER": env.get("ACME_WORKER", "on") != "off",
        "SESSION_COOKIE_SECURE": production,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "PDCONNECT_CLIENT_NAME": "Acme Monitoring",
    }
    for name, value in env.items():
        if name.startswith("PDCONNECT_"):
            config[name] = int(value) if value.isdigit() else value
    config.setdefault("PDCONNECT_CLIENT_URL", config["ACME_BASE_URL"])
    return config
