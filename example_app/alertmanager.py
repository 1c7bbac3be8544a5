"""Acme's Alertmanager tokens: random, shown once, stored as a hash, rotated by their owner.

pdconnect's Alertmanager route (``POST /pagerduty/alertmanager``) authenticates with
:func:`pdconnect.flask.alertmanager_token`: the owner id signed with the app's secret. That
needs no storage, but it is the same token on every visit and can only be revoked by changing
the secret, for every user at once. Acme issues its own instead: ``<owner>.<32 random bytes>``,
shown once when made, kept as its SHA-256 (a random 32-byte secret needs no slow hash), and
replaced (the old one refused at once) when its owner rotates it.

pdconnect's route asks Acme who sent a request through ``PDCONNECT_ALERTMANAGER_AUTHENTICATE``
(:func:`install`): only a valid Acme token names an owner, so pdconnect's stateless token is
never accepted from outside.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

import sqlalchemy as sa
from flask import Flask, Request

from example_app import db

TOKEN_BYTES = 32
_OWNER = re.compile(r"[0-9]{1,20}", re.ASCII)
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}", re.ASCII)  # token_urlsafe(32)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def issue_token(engine: sa.Engine, owner: str) -> str:
    """A new token for ``owner``, replacing (and so revoking) any earlier one; shown once."""
    token = f"{owner}.{secrets.token_urlsafe(TOKEN_BYTES)}"
    values = {"token_sha256": _digest(token), "created_at": time.time()}
    table = db.alertmanager_tokens
    for _attempt in range(3):
        try:
            with engine.begin() as conn:
                updated = conn.execute(sa.update(table).where(table.c.owner == owner).values(**values))
                if updated.rowcount == 0:
                    conn.execute(sa.insert(table).values(owner=owner, **values))
            return token
        except sa.exc.IntegrityError:  # a rotation in another tab inserted first: replace it
            continue
    raise RuntimeError("could not store the Alertmanager token")


def token_created_at(engine: sa.Engine, owner: str) -> float | None:
    """When ``owner``'s current token was made (``None``: they have none)."""
    table = db.alertmanager_tokens
    with engine.connect() as conn:
        created: float | None = conn.execute(
            sa.select(table.c.created_at).where(table.c.owner == owner)
        ).scalar_one_or_none()
    return created


def owner_of(engine: sa.Engine, authorization: str | None) -> str | None:
    """The owner whose current token ``Authorization: Bearer <token>`` carries, else ``None``."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    owner, _, secret = token.partition(".")
    if scheme.lower() != "bearer" or not _OWNER.fullmatch(owner) or not _SECRET.fullmatch(secret):
        return None
    table = db.alertmanager_tokens
    with engine.connect() as conn:
        stored = conn.execute(sa.select(table.c.token_sha256).where(table.c.owner == owner)).scalar_one_or_none()
    if stored is None or not hmac.compare_digest(stored, _digest(token)):
        return None
    return owner


def install(app: Flask, engine: sa.Engine) -> None:
    """Have pdconnect's Alertmanager route know its senders by their Acme tokens."""

    def authenticate(sent: Request) -> str | None:
        return owner_of(engine, sent.headers.get("Authorization"))

    app.config["PDCONNECT_ALERTMANAGER_AUTHENTICATE"] = authenticate
