"""Acme Monitoring's settings: from the environment, with safe demo defaults.

``ACME_*`` variables configure the app and are read here, once, as their real types (a bad
one raises :class:`~pdconnect.errors.ConfigError` naming it); ``PDCONNECT_*`` variables are
passed to pdconnect as the strings they are, and pdconnect reads them (see the Flask guide).
In production (``ACME_ENV=production``) the app refuses to start with a missing, short or demo
secret key.

``ACME_BASE_URL``, when set, is also PagerDuty's way back: ``PDCONNECT_CALLBACK_URL`` defaults
to ``<ACME_BASE_URL>/pagerduty/callback``. An explicit one wins; an empty one means none (hosts
then come from ``PDCONNECT_ALLOWED_HOSTS``).

``ACME_MONITOR_ALLOWED_NETWORKS`` (CIDRs, comma-separated) lets HTTP monitors reach private
networks, which they are refused by default (see :mod:`example_app.http_check`); the demo
allows loopback, where its own endpoints are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from example_app.http_check import Network, parse_networks
from pdconnect.config_values import parse_bool, parse_list
from pdconnect.errors import ConfigError
from pdconnect.urls import safe_link_href

DEMO_SECRET = "acme-demo-secret-do-not-use-in-production"  # noqa: S105 -- refused in production
_INSECURE = {DEMO_SECRET, "changeme", "secret", "dev", "development"}
_MODES = {"development": False, "dev": False, "production": True, "prod": True}


class InsecureConfiguration(SystemExit):
    """Raised at start-up when production settings are unsafe."""


def load_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read settings from ``environ`` (the process environment by default)."""
    env = os.environ if environ is None else environ
    mode = env.get("ACME_ENV", "development").strip().lower()
    if mode not in _MODES:
        # A typo ("prodution") must not quietly start in development, with the demo secret.
        raise ConfigError("ACME_ENV must be development or production", setting="ACME_ENV")
    production = _MODES[mode]
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
        "ACME_SCHEDULER": env.get("ACME_SCHEDULER", "on"),
        "ACME_WORKER": env.get("ACME_WORKER", "on"),
        "ACME_MONITOR_ALLOWED_NETWORKS": env.get("ACME_MONITOR_ALLOWED_NETWORKS"),
        "SESSION_COOKIE_SECURE": production,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "PDCONNECT_CLIENT_NAME": "Acme Monitoring",
        "PDCONNECT_ERROR_TEMPLATE": "pagerduty_error.html",  # pdconnect's error pages, in Acme's layout
    }
    config.update({name: value for name, value in env.items() if name.startswith("PDCONNECT_")})
    if safe_link_href(config["ACME_BASE_URL"]) is None:
        # It is the link in every incident Acme opens, and the start of its callback URL.
        raise ConfigError("ACME_BASE_URL must be an http:// or https:// URL with a host", setting="ACME_BASE_URL")
    config.setdefault("PDCONNECT_CLIENT_URL", config["ACME_BASE_URL"])
    if "ACME_BASE_URL" in env and "PDCONNECT_CALLBACK_URL" not in env:
        # Where users reach Acme is where PagerDuty sends them back (and what the Alertmanager
        # receiver URL is built on): without it, every request's host would have to be listed
        # in PDCONNECT_ALLOWED_HOSTS, and a production Acme would answer 400 on its connect pages.
        config["PDCONNECT_CALLBACK_URL"] = f"{config['ACME_BASE_URL']}/pagerduty/callback"
    read_settings(config)
    return config


def read_settings(config: MutableMapping[str, Any]) -> None:
    """Check Acme's typed settings and keep them as their real types (again after overrides)."""
    for name in ("ACME_SCHEDULER", "ACME_WORKER"):
        config[name] = parse_bool(config[name], name=name)
    config["ACME_MONITOR_ALLOWED_NETWORKS"] = allowed_networks(config["ACME_MONITOR_ALLOWED_NETWORKS"])


def allowed_networks(value: Any) -> tuple[Network, ...]:
    """``ACME_MONITOR_ALLOWED_NETWORKS`` as networks: CIDRs in a list, or one comma-separated string."""
    name = "ACME_MONITOR_ALLOWED_NETWORKS"
    if isinstance(value, list | tuple) and all(isinstance(item, IPv4Network | IPv6Network) for item in value):
        return tuple(value)
    try:
        return parse_networks(parse_list(value, name=name))
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}", setting=name) from None
