"""Where a vendor keeps its users' integrations: a small interface, in memory or in SQL.

Every operation takes the owner id (the vendor's user or organisation) and touches only that
owner's records: one owner can never read, change or delete another's integrations, whatever
ids it passes.

Saving is an *upsert per PagerDuty target*: connecting the same service again for the same
owner updates that owner's record (new key, new names) instead of adding a second one. The
target is recognised by the account and service id when PagerDuty gave them (the install
flow), else by the account and service name (Connect), else by the key itself (a pasted key).
Another owner connecting the same service gets a record of its own and never renames or
takes over the first (Sentry once had exactly that bug).

An integration is *broken* when PagerDuty no longer knows its key (deleted or disabled there):
:meth:`IntegrationStore.mark_broken` records when and why, :meth:`IntegrationStore.broken`
lists an owner's broken integrations (for a "reconnect" prompt), and saving the same target
again (the owner reconnects or pastes the key again) clears the mark.
"""

from __future__ import annotations

import builtins
import hashlib
import re
import threading
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from pdconnect.database import create_all, engine_for, shown_url
from pdconnect.errors import InvalidData
from pdconnect.integration import EventsApi, Integration, Origin, Region
from pdconnect.keys import KeyType, redact
from pdconnect.timestamps import as_utc


@dataclass(frozen=True, repr=False)
class StoredIntegration(Integration):
    """An :class:`~pdconnect.integration.Integration` as stored: with its id and health.

    ``failing_since`` and ``failure_reason`` are set by
    :meth:`IntegrationStore.mark_failing` (PagerDuty refused an event) and cleared by
    :meth:`IntegrationStore.mark_working`. ``broken_since`` and ``broken_reason`` are set by
    :meth:`IntegrationStore.mark_broken` (PagerDuty no longer knows the key: every event will
    be refused until the owner reconnects) and cleared by reconnecting or by
    :meth:`IntegrationStore.mark_working`. It is still an ``Integration``, so it can be handed
    to a :class:`~pdconnect.sender.Sender` as it is.
    """

    id: str = ""
    updated_at: datetime | None = None
    failing_since: datetime | None = None
    failure_reason: str | None = None
    broken_since: datetime | None = None
    broken_reason: str | None = None

    def __repr__(self) -> str:
        base = super().__repr__()[len("Integration(") : -1]
        health = f", failing since {self.failing_since.isoformat()}" if self.failing_since else ""
        if self.broken_since:
            health += f", broken since {self.broken_since.isoformat()}"
        return f"StoredIntegration(id={self.id!r}, {base}{health})"

    __str__ = __repr__

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    @property
    def broken(self) -> bool:
        """PagerDuty no longer knows this key: show "reconnect" to the owner."""
        return self.broken_since is not None


#: What a pasted key's natural key starts with: a SHA-256 of the key follows, never the key.
KEY_DIGEST_PREFIX = "key-sha256:"
# What pdconnect before issue 9 stored for a pasted key: the key itself, in plain text.
_LEGACY_KEY_PREFIX = "key:"


def key_digest(integration_key: str) -> str:
    """The natural key of a pasted key: ``key-sha256:`` and the SHA-256 of the key, in hex.

    The natural key column is compared and indexed, so it cannot be encrypted like the
    ``integration_key`` column (a cipher such as Fernet gives a new ciphertext every time).
    A digest is unkeyed on purpose: an integration key carries 128 random bits, so nobody
    can find it from its digest by guessing, and a keyed digest would tie every record to a
    secret whose rotation would make reconnecting add a second record instead of updating.
    Lone surrogates are digested as UTF-8 would escape them, so no string makes this raise.
    """
    encoded = integration_key.encode("utf-8", "surrogatepass")
    return KEY_DIGEST_PREFIX + hashlib.sha256(encoded).hexdigest()


def natural_key(integration: Integration) -> str:
    """What makes two integrations of one owner "the same PagerDuty target".

    For a pasted key it is :func:`key_digest` of the key: the key itself never lands in this
    plain-text, indexed column, even when a :class:`KeyCipher` encrypts the key's own column.
    """
    account = integration.account or ""
    if integration.service_id:
        return f"id:{account}:{integration.service_id}"
    if integration.service_name and integration.origin is not Origin.PASTED:
        return f"name:{integration.origin.value}:{account}:{integration.service_name}"
    return key_digest(integration.integration_key)


def _legacy_natural_key(integration: Integration) -> str | None:
    """The natural key an older pdconnect stored for this integration, when it differs from today's."""
    current = natural_key(integration)
    if not current.startswith(KEY_DIGEST_PREFIX):
        return None
    return _LEGACY_KEY_PREFIX + integration.integration_key


@runtime_checkable
class IntegrationStore(Protocol):
    """Saving, finding and removing integrations, always within one owner's records."""

    def save(self, integration: Integration) -> StoredIntegration:
        """Add the integration, or update the owner's record for the same PagerDuty target."""
        ...

    def get(self, owner_id: str, integration_id: str) -> StoredIntegration | None:
        """The owner's integration with this id, or ``None`` (also for another owner's id)."""
        ...

    def list(self, owner_id: str) -> list[StoredIntegration]:
        """The owner's integrations, oldest first."""
        ...

    def delete(self, owner_id: str, integration_id: str) -> bool:
        """Disconnect: remove the owner's integration; ``False`` if the owner has no such id."""
        ...

    def mark_failing(self, owner_id: str, integration_id: str, reason: str) -> bool:
        """Record that sending with this integration fails (the first time and the reason are kept)."""
        ...

    def mark_working(self, owner_id: str, integration_id: str) -> bool:
        """Clear the failing and broken marks (an event just went through)."""
        ...

    def mark_broken(
        self, owner_id: str, integration_id: str, reason: str, *, integration_key: str | None = None
    ) -> bool:
        """Record that PagerDuty no longer knows this integration's key, and why.

        Returns ``True`` only when this call marked it (it was not broken, and with
        ``integration_key``, that is still its key: a refusal of a key the owner has since
        replaced changes nothing). So among racing workers exactly one is told, and can tell
        the owner. The reason is cleaned: no control characters, no key, at most 500 characters.
        """
        ...

    def broken(self, owner_id: str) -> builtins.list[StoredIntegration]:
        """The owner's broken integrations, oldest first: the ones to reconnect."""
        ...


def _now() -> datetime:
    return datetime.now(UTC)


_MAX_REASON = 500
# Anything shaped like a key or a token (32 or more letters and digits) is masked in a reason.
_TOKEN = re.compile(r"[A-Za-z0-9]{32,}")


def clean_reason(reason: object, *, integration_key: str | None = None) -> str:
    """A reason fit to store and show: one line, printable, no key, at most 500 characters."""
    if not isinstance(reason, str):
        raise InvalidData("the reason must be a string", field="reason")
    if integration_key:
        reason = reason.replace(integration_key, redact(integration_key))
    reason = _TOKEN.sub(lambda m: redact(m.group(0)), reason)
    # Control, format, unassigned and private characters, lone surrogates and separators become spaces.
    printable = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in reason)
    cleaned = " ".join(printable.split())[:_MAX_REASON].rstrip()
    return cleaned or "no reason given"


def _findable(*ids: object) -> bool:
    """Whether ids could name a stored record: strings every database can take.

    Anything else (another type, a lone surrogate, a NUL, which PostgreSQL refuses) names no
    record, so it finds nothing instead of making the driver raise.
    """
    for value in ids:
        if not isinstance(value, str) or "\x00" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


class MemoryIntegrationStore:
    """An :class:`IntegrationStore` in this process's memory, for tests and demos."""

    def __init__(self) -> None:
        self._records: dict[str, StoredIntegration] = {}
        self._lock = threading.Lock()

    def save(self, integration: Integration) -> StoredIntegration:
        key = natural_key(integration)
        with self._lock:
            for record in self._records.values():
                if record.owner_id == integration.owner_id and natural_key(record) == key:
                    updated = _stored(integration, record.id)
                    self._records[record.id] = updated
                    return updated
            stored = _stored(integration, _new_id())
            self._records[stored.id] = stored
            return stored

    def get(self, owner_id: str, integration_id: str) -> StoredIntegration | None:
        record = self._records.get(integration_id)
        return record if record is not None and record.owner_id == owner_id else None

    def list(self, owner_id: str) -> list[StoredIntegration]:
        with self._lock:
            return [r for r in self._records.values() if r.owner_id == owner_id]

    def broken(self, owner_id: str) -> builtins.list[StoredIntegration]:
        return [r for r in self.list(owner_id) if r.broken]

    def delete(self, owner_id: str, integration_id: str) -> bool:
        with self._lock:
            if self.get(owner_id, integration_id) is None:
                return False
            del self._records[integration_id]
            return True

    def mark_failing(self, owner_id: str, integration_id: str, reason: str) -> bool:
        return self._update(
            owner_id,
            integration_id,
            lambda r: replace(
                r,
                failing_since=r.failing_since or _now(),
                failure_reason=clean_reason(reason, integration_key=r.integration_key),
            ),
        )

    def mark_working(self, owner_id: str, integration_id: str) -> bool:
        return self._update(
            owner_id,
            integration_id,
            lambda r: replace(r, failing_since=None, failure_reason=None, broken_since=None, broken_reason=None),
        )

    def mark_broken(
        self, owner_id: str, integration_id: str, reason: str, *, integration_key: str | None = None
    ) -> bool:
        with self._lock:
            record = self.get(owner_id, integration_id)
            if record is None or record.broken:
                return False
            if integration_key is not None and integration_key != record.integration_key:
                return False
            cleaned = clean_reason(reason, integration_key=record.integration_key)
            self._records[integration_id] = replace(record, broken_since=_now(), broken_reason=cleaned)
            return True

    def _update(
        self, owner_id: str, integration_id: str, change: Callable[[StoredIntegration], StoredIntegration]
    ) -> bool:
        with self._lock:
            record = self.get(owner_id, integration_id)
            if record is None:
                return False
            self._records[integration_id] = change(record)
            return True


def _stored(integration: Integration, record_id: str, **health: Any) -> StoredIntegration:
    values = {f.name: getattr(integration, f.name) for f in fields(Integration)}
    return StoredIntegration(**values, id=record_id, updated_at=_now(), **health)


class KeyCipher(Protocol):
    """Encrypts integration keys at rest (for example with a KMS or Fernet); optional."""

    def encrypt(self, plaintext: str) -> str: ...

    def decrypt(self, ciphertext: str) -> str: ...


class SqlIntegrationStore:
    """An :class:`IntegrationStore` in a SQL table, through SQLAlchemy Core.

    ``engine`` is an engine or a URL (SQLite, PostgreSQL, or anything SQLAlchemy speaks).
    The table is created when missing unless ``create_tables`` is false (then run
    :meth:`create_tables` yourself, or ``pdconnect db init``). ``cipher`` encrypts keys at
    rest if given; without one they are stored as they are (they can only send events, but
    they can page your customer: protect the database).
    """

    def __init__(
        self,
        engine: sa.Engine | str,
        *,
        table_name: str = "pdconnect_integrations",
        create_tables: bool = True,
        cipher: KeyCipher | None = None,
    ) -> None:
        self.engine = engine_for(engine)
        self.cipher = cipher
        self.metadata = sa.MetaData()
        self.table = sa.Table(
            table_name,
            self.metadata,
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("owner_id", sa.String(255), nullable=False),
            sa.Column("natural_key", sa.String(600), nullable=False),
            sa.Column("integration_key", sa.Text, nullable=False),
            sa.Column("key_hint", sa.String(8), nullable=False),
            sa.Column("origin", sa.String(16), nullable=False),
            sa.Column("events_api", sa.String(8), nullable=False),
            sa.Column("key_type", sa.String(16), nullable=False),
            sa.Column("region", sa.String(8), nullable=False),
            sa.Column("account", sa.String(255)),
            sa.Column("account_name", sa.String(255)),
            sa.Column("service_name", sa.String(255)),
            sa.Column("service_id", sa.String(255)),
            sa.Column("target_type", sa.String(255)),
            sa.Column("connected_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("failing_since", sa.DateTime(timezone=True)),
            sa.Column("failure_reason", sa.String(500)),
            sa.Column("broken_since", sa.DateTime(timezone=True)),
            sa.Column("broken_reason", sa.String(500)),
            sa.UniqueConstraint("owner_id", "natural_key", name=f"{table_name}_owner_target"),
            sa.Index(f"{table_name}_owner", "owner_id"),
        )
        if create_tables:
            self.create_tables()

    def create_tables(self) -> None:
        """Create the table (and its indexes) if it does not exist; add columns newer versions need.

        Safe to run again and from several processes at once: a table made by an older
        pdconnect gets the ``broken_since`` and ``broken_reason`` columns it lacks.
        """
        create_all(self.metadata, self.engine)
        self._add_missing_columns()
        self.upgrade_natural_keys()

    def upgrade_natural_keys(self) -> int:
        """Rewrite natural keys an older pdconnect stored as ``key:<the key>`` as the key's digest.

        Run by :meth:`create_tables` (so on start-up, and by ``pdconnect db init``); safe to
        run again and from several processes at once. A legacy row whose digest another row
        already holds (an older and a newer process both saved the key) keeps its record
        under ``legacy-duplicate:<id>``, so no record is lost and the key is gone either way.
        Returns how many rows were rewritten.
        """
        table = self.table
        legacy = table.c.natural_key.startswith(_LEGACY_KEY_PREFIX, autoescape=True)
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.id, table.c.natural_key).where(legacy)).all()
        rewritten = 0
        for record_id, old in rows:
            digest = key_digest(old[len(_LEGACY_KEY_PREFIX) :])
            for replacement in (digest, f"legacy-duplicate:{record_id}"):
                try:
                    with self.engine.begin() as conn:
                        result = conn.execute(
                            sa.update(table)
                            .where(table.c.id == record_id, table.c.natural_key == old)
                            .values(natural_key=replacement)
                        )
                except IntegrityError:
                    continue  # that digest is taken by the same owner's newer record
                rewritten += result.rowcount
                break
        return rewritten

    #: Columns added after the table's first release, in order; each nullable, so adding is safe.
    _ADDED_COLUMNS = ("broken_since", "broken_reason")

    def _add_missing_columns(self) -> None:
        def missing() -> list[str]:
            have = {c["name"] for c in sa.inspect(self.engine).get_columns(self.table.name)}
            return [name for name in self._ADDED_COLUMNS if name not in have]

        preparer = self.engine.dialect.identifier_preparer
        for name in missing():
            column = self.table.c[name]
            ddl = (
                f"ALTER TABLE {preparer.format_table(self.table)} ADD COLUMN {preparer.quote(name)} "
                f"{column.type.compile(dialect=self.engine.dialect)}"
            )
            try:
                with self.engine.begin() as conn:
                    conn.execute(sa.text(ddl))
            except DBAPIError:
                # Another process added it first ("duplicate column"); anything else is real.
                if name in missing():
                    raise

    def __repr__(self) -> str:
        return f"SqlIntegrationStore({shown_url(self.engine.url)!r}, table={self.table.name!r})"

    # -- rows <-> records --------------------------------------------------------------------

    def _row(self, integration: Integration) -> dict[str, Any]:
        key = integration.integration_key
        return {
            "owner_id": integration.owner_id,
            "natural_key": natural_key(integration),
            "integration_key": self.cipher.encrypt(key) if self.cipher else key,
            "key_hint": redact(key)[-4:],
            "origin": integration.origin.value,
            "events_api": integration.events_api.value,
            "key_type": integration.key_type.value,
            "region": integration.region.value,
            "account": integration.account,
            "account_name": integration.account_name,
            "service_name": integration.service_name,
            "service_id": integration.service_id,
            "target_type": integration.target_type,
            "connected_at": integration.connected_at,
            "updated_at": _now(),
            "failing_since": None,
            "failure_reason": None,
            "broken_since": None,
            "broken_reason": None,
        }

    def _record(self, row: sa.Row[Any]) -> StoredIntegration:
        data = row._mapping
        key = data["integration_key"]
        return StoredIntegration(
            owner_id=data["owner_id"],
            integration_key=self.cipher.decrypt(key) if self.cipher else key,
            origin=Origin(data["origin"]),
            events_api=EventsApi(data["events_api"]),
            key_type=KeyType(data["key_type"]),
            region=Region(data["region"]),
            account=data["account"],
            account_name=data["account_name"],
            service_name=data["service_name"],
            service_id=data["service_id"],
            target_type=data["target_type"],
            connected_at=as_utc(data["connected_at"]) or _now(),
            id=data["id"],
            updated_at=as_utc(data["updated_at"]),
            failing_since=as_utc(data["failing_since"]),
            failure_reason=data["failure_reason"],
            broken_since=as_utc(data["broken_since"]),
            broken_reason=data["broken_reason"],
        )

    def _owned(self, owner_id: str, integration_id: str) -> sa.ColumnElement[bool]:
        return sa.and_(self.table.c.owner_id == owner_id, self.table.c.id == integration_id)

    # -- the interface -----------------------------------------------------------------------

    def save(self, integration: Integration) -> StoredIntegration:
        """Insert or update the owner's record for this target (see the module's docstring).

        A record an older pdconnect stored under the plain key is found too, and rewritten
        under the key's digest. Raises :class:`~pdconnect.errors.InvalidData` for a value
        the table cannot hold (too long for its column, or refused by a constraint other
        than the one-record-per-target rule), without quoting any value: that is bad input,
        not an outage. Other database errors (an unreachable server) propagate.
        """
        row = self._row(integration)
        self._check_widths(row)
        table = self.table
        wanted = [row["natural_key"]]
        legacy = _legacy_natural_key(integration)
        if legacy is not None:
            wanted.append(legacy)
        for _ in range(2):
            try:
                with self.engine.begin() as conn:
                    existing = conn.execute(
                        sa.select(table.c.id)
                        .where(table.c.owner_id == row["owner_id"], table.c.natural_key.in_(wanted))
                        # the current form first: a legacy twin left beside it is never picked
                        .order_by(sa.case((table.c.natural_key == row["natural_key"], 0), else_=1))
                        .limit(1)
                    ).scalar_one_or_none()
                    if existing is None:
                        record_id = _new_id()
                        conn.execute(sa.insert(table).values(id=record_id, **row))
                    else:
                        record_id = existing
                        conn.execute(sa.update(table).where(table.c.id == record_id).values(**row))
                    stored = conn.execute(sa.select(table).where(table.c.id == record_id)).one()
                    return self._record(stored)
            except IntegrityError as exc:
                # Another process saved the same target between our select and insert: the
                # second pass finds its row and updates it. Any other refusal is the data's.
                if not self._target_exists(row["owner_id"], row["natural_key"]):
                    raise InvalidData("the database refused this integration's values") from exc
                continue
            except DataError as exc:  # PostgreSQL: a value too long, or text it cannot store
                raise InvalidData("the database refused this integration's values") from exc
        raise InvalidData("the database refused this integration's values (saving it conflicted twice)")

    def _target_exists(self, owner_id: str, key: str) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(self.table.c.id).where(self.table.c.owner_id == owner_id, self.table.c.natural_key == key)
            ).first()
        return found is not None

    def _check_widths(self, row: dict[str, Any]) -> None:
        """Refuse a value longer than its column, on every database alike (SQLite never checks)."""
        for name, value in row.items():
            column_type = self.table.c[name].type
            width = getattr(column_type, "length", None)
            if isinstance(value, str) and isinstance(width, int) and len(value) > width:
                raise InvalidData(f"{name} must be at most {width} characters", field=name)

    def get(self, owner_id: str, integration_id: str) -> StoredIntegration | None:
        if not _findable(owner_id, integration_id):
            return None
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(self.table).where(self._owned(owner_id, integration_id))).one_or_none()
        return self._record(row) if row is not None else None

    def list(self, owner_id: str) -> list[StoredIntegration]:
        if not _findable(owner_id):
            return []
        query = (
            sa.select(self.table)
            .where(self.table.c.owner_id == owner_id)
            .order_by(self.table.c.connected_at, self.table.c.id)
        )
        with self.engine.connect() as conn:
            return [self._record(row) for row in conn.execute(query)]

    def broken(self, owner_id: str) -> builtins.list[StoredIntegration]:
        if not _findable(owner_id):
            return []
        table = self.table
        query = (
            sa.select(table)
            .where(table.c.owner_id == owner_id, table.c.broken_since.is_not(None))
            .order_by(table.c.connected_at, table.c.id)
        )
        with self.engine.connect() as conn:
            return [self._record(row) for row in conn.execute(query)]

    def delete(self, owner_id: str, integration_id: str) -> bool:
        if not _findable(owner_id, integration_id):
            return False
        with self.engine.begin() as conn:
            result = conn.execute(sa.delete(self.table).where(self._owned(owner_id, integration_id)))
        return bool(result.rowcount)

    def _stored_key(self, conn: sa.Connection, owner_id: str, integration_id: str) -> str | None:
        """The row's key column as stored (ciphertext with a cipher), or ``None`` for no such row."""
        if not _findable(owner_id, integration_id):
            return None
        found: str | None = conn.execute(
            sa.select(self.table.c.integration_key).where(self._owned(owner_id, integration_id))
        ).scalar_one_or_none()
        return found

    def mark_failing(self, owner_id: str, integration_id: str, reason: str) -> bool:
        table = self.table
        with self.engine.begin() as conn:
            stored = self._stored_key(conn, owner_id, integration_id)
            if stored is None:
                return False
            key = self.cipher.decrypt(stored) if self.cipher else stored
            result = conn.execute(
                sa.update(table)
                .where(self._owned(owner_id, integration_id))
                .values(
                    failing_since=sa.func.coalesce(table.c.failing_since, _now()),
                    failure_reason=clean_reason(reason, integration_key=key),
                    updated_at=_now(),
                )
            )
        return bool(result.rowcount)

    def mark_working(self, owner_id: str, integration_id: str) -> bool:
        if not _findable(owner_id, integration_id):
            return False
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.update(self.table)
                .where(self._owned(owner_id, integration_id))
                .values(
                    failing_since=None, failure_reason=None, broken_since=None, broken_reason=None, updated_at=_now()
                )
            )
        return bool(result.rowcount)

    def mark_broken(
        self, owner_id: str, integration_id: str, reason: str, *, integration_key: str | None = None
    ) -> bool:
        table = self.table
        with self.engine.begin() as conn:
            stored = self._stored_key(conn, owner_id, integration_id)
            if stored is None:
                return False
            key = self.cipher.decrypt(stored) if self.cipher else stored
            if integration_key is not None and integration_key != key:
                return False
            cleaned = clean_reason(reason, integration_key=key)
            # Conditional on the key column as read and on not being broken yet: a reconnect that
            # replaced the key meanwhile, or another worker that marked it first, makes this a no-op.
            result = conn.execute(
                sa.update(table)
                .where(
                    self._owned(owner_id, integration_id),
                    table.c.integration_key == stored,
                    table.c.broken_since.is_(None),
                )
                .values(broken_since=_now(), broken_reason=cleaned, updated_at=_now())
            )
        return bool(result.rowcount)
