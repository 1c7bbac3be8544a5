"""Webhook subscription secrets, registered per subscription and, optionally, per integration.

PagerDuty shows a V3 subscription's secret once, in the answer that created it. The vendor
registers it here with the subscription id (and the owner and integration it belongs to);
the receiver then looks up the secrets for each request's ``X-Webhook-Subscription`` and
learns, from the one that verified it, whose webhook it is. Several secrets may be registered
for one subscription (rotation: register the new one, remove the old one later).

Secrets are never shown in a repr, and can be encrypted at rest with the same
:class:`~pdconnect.storage.KeyCipher` as integration keys.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa

from pdconnect.database import create_all, engine_for, shown_url
from pdconnect.storage import KeyCipher

MAX_SECRET_LENGTH = 1024


@dataclass(frozen=True)
class RegisteredSecret:
    """A subscription's secret as stored (the secret itself stays out of reprs and logs)."""

    id: str
    subscription_id: str
    secret: str = field(repr=False)
    owner_id: str | None = None
    integration_id: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def _checked(subscription_id: str, secret: str) -> None:
    if not isinstance(subscription_id, str) or not subscription_id.strip() or len(subscription_id) > 255:
        raise ValueError("subscription_id must be a non-empty string of at most 255 characters")
    if not isinstance(secret, str) or not secret or len(secret) > MAX_SECRET_LENGTH:
        raise ValueError(f"the secret must be a non-empty string of at most {MAX_SECRET_LENGTH} characters")


@runtime_checkable
class WebhookSecretStore(Protocol):
    def register(
        self, subscription_id: str, secret: str, *, owner_id: str | None = None, integration_id: str | None = None
    ) -> RegisteredSecret:
        """Keep ``secret`` for ``subscription_id`` (beside any already registered)."""
        ...

    def secrets_for(self, subscription_id: str) -> list[RegisteredSecret]:
        """The secrets registered for a subscription, newest first."""
        ...

    def for_integration(self, owner_id: str, integration_id: str) -> list[RegisteredSecret]:
        """The secrets registered for one of an owner's integrations, newest first."""
        ...

    def remove(self, subscription_id: str, secret_id: str | None = None) -> int:
        """Forget one secret of a subscription, or all of them; returns how many."""
        ...


class MemoryWebhookSecretStore:
    """A :class:`WebhookSecretStore` in this process's memory."""

    def __init__(self) -> None:
        self._secrets: list[RegisteredSecret] = []
        self._lock = threading.Lock()

    def register(
        self, subscription_id: str, secret: str, *, owner_id: str | None = None, integration_id: str | None = None
    ) -> RegisteredSecret:
        _checked(subscription_id, secret)
        record = RegisteredSecret(uuid.uuid4().hex[:16], subscription_id, secret, owner_id, integration_id)
        with self._lock:
            self._secrets.append(record)
        return record

    def secrets_for(self, subscription_id: str) -> list[RegisteredSecret]:
        with self._lock:
            return [s for s in reversed(self._secrets) if s.subscription_id == subscription_id]

    def for_integration(self, owner_id: str, integration_id: str) -> list[RegisteredSecret]:
        with self._lock:
            return [s for s in reversed(self._secrets) if s.owner_id == owner_id and s.integration_id == integration_id]

    def remove(self, subscription_id: str, secret_id: str | None = None) -> int:
        with self._lock:
            keep = [
                s
                for s in self._secrets
                if s.subscription_id != subscription_id or (secret_id is not None and s.id != secret_id)
            ]
            removed = len(self._secrets) - len(keep)
            self._secrets = keep
        return removed


class SqlWebhookSecretStore:
    """A :class:`WebhookSecretStore` in a SQL table (encrypted at rest with ``cipher`` if given)."""

    def __init__(
        self,
        engine: sa.Engine | str,
        *,
        table_name: str = "pdconnect_webhook_secrets",
        cipher: KeyCipher | None = None,
        create_tables: bool = True,
    ) -> None:
        self.engine = engine_for(engine)
        self.cipher = cipher
        self.metadata = sa.MetaData()
        self.table = sa.Table(
            table_name,
            self.metadata,
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("subscription_id", sa.String(255), nullable=False),
            sa.Column("secret", sa.Text, nullable=False),
            sa.Column("owner_id", sa.String(255)),
            sa.Column("integration_id", sa.String(64)),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("seq", sa.Integer, nullable=False),  # registration order, for "newest first"
            sa.Index(f"{table_name}_subscription", "subscription_id"),
            sa.Index(f"{table_name}_integration", "owner_id", "integration_id"),
        )
        if create_tables:
            create_all(self.metadata, self.engine)

    def __repr__(self) -> str:
        url = shown_url(self.engine.url)
        return f"SqlWebhookSecretStore({url!r}, table={self.table.name!r})"

    def _record(self, row: sa.Row[Any]) -> RegisteredSecret:
        data = row._mapping
        secret = self.cipher.decrypt(data["secret"]) if self.cipher else data["secret"]
        created = data["created_at"]
        return RegisteredSecret(
            id=data["id"],
            subscription_id=data["subscription_id"],
            secret=secret,
            owner_id=data["owner_id"],
            integration_id=data["integration_id"],
            created_at=created if created.tzinfo else created.replace(tzinfo=UTC),
        )

    def register(
        self, subscription_id: str, secret: str, *, owner_id: str | None = None, integration_id: str | None = None
    ) -> RegisteredSecret:
        _checked(subscription_id, secret)
        record = RegisteredSecret(uuid.uuid4().hex[:16], subscription_id, secret, owner_id, integration_id)
        table = self.table
        with self.engine.begin() as conn:
            seq = conn.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.seq), 0) + 1)).scalar_one()
            conn.execute(
                sa.insert(table).values(
                    id=record.id,
                    subscription_id=subscription_id,
                    secret=self.cipher.encrypt(secret) if self.cipher else secret,
                    owner_id=owner_id,
                    integration_id=integration_id,
                    created_at=record.created_at,
                    seq=seq,
                )
            )
        return record

    def _select(self, *where: sa.ColumnElement[bool]) -> list[RegisteredSecret]:
        query = sa.select(self.table).where(*where).order_by(self.table.c.seq.desc(), self.table.c.created_at.desc())
        with self.engine.connect() as conn:
            return [self._record(row) for row in conn.execute(query)]

    def secrets_for(self, subscription_id: str) -> list[RegisteredSecret]:
        return self._select(self.table.c.subscription_id == subscription_id)

    def for_integration(self, owner_id: str, integration_id: str) -> list[RegisteredSecret]:
        return self._select(self.table.c.owner_id == owner_id, self.table.c.integration_id == integration_id)

    def remove(self, subscription_id: str, secret_id: str | None = None) -> int:
        condition = self.table.c.subscription_id == subscription_id
        if secret_id is not None:
            condition = sa.and_(condition, self.table.c.id == secret_id)
        with self.engine.begin() as conn:
            result = conn.execute(sa.delete(self.table).where(condition))
        return int(result.rowcount or 0)

    def drop_tables(self) -> None:
        self.metadata.drop_all(self.engine)
