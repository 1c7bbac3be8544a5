"""Where a vendor keeps its customers' OAuth tokens: one credential per owner and PagerDuty account.

A :class:`Credential` is what a finished authorization leaves: the tokens, when the access
token expires, the granted scopes, and the account they reach (subdomain, account id, user,
delegation, region and its API bases). A store keeps one per ``(owner_id, account_id)``;
saving the same account again for the same owner (a reconnect) replaces its tokens, clears a
"needs re-authorisation" mark and bumps the version. Every read is scoped by owner: another
owner's id finds nothing, whatever account id it passes.

PagerDuty rotates the refresh token on every refresh, so tokens are updated only by
compare-and-swap (:meth:`CredentialStore.replace` with the version read) or under
:meth:`CredentialStore.locked`, which holds the row while one caller refreshes
(``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite). A rotated refresh
token is therefore never overwritten by an older one.
:class:`~pdconnect.oauth.refresh.TokenRefresher` is built on that.

:class:`SqlCredentialStore` encrypts both tokens with a
:class:`~pdconnect.oauth.cipher.TokenCipher` and refuses to start without one unless told
``insecure_plaintext=True`` (a demo, a test).
"""

from __future__ import annotations

import json
import math
import re
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa
from sqlalchemy.exc import DataError, IntegrityError

from pdconnect.database import create_all, engine_for, shown_url
from pdconnect.errors import ConfigError, InvalidData, UnsafeURLError
from pdconnect.oauth.cipher import TOKEN_KEYS_SETTING, TokenDecryptionError
from pdconnect.oauth.id_token import AccountIdentity
from pdconnect.oauth.tokens import TokenSet
from pdconnect.storage import KeyCipher, clean_reason
from pdconnect.text import text_problem
from pdconnect.timestamps import as_utc
from pdconnect.urls import check_base_url

#: Longest token accepted: what the token endpoint's reader takes (:mod:`pdconnect.oauth.tokens`),
#: so that tokens a refresh brought are never refused here (their rotation would be lost).
MAX_TOKEN_LENGTH = 8192
#: Most scopes one credential holds (as many as a scope string may hold).
MAX_SCOPES = 200
# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,200}", re.ASCII)
# RFC 6750's b64token is narrower; any visible ASCII is taken, nothing that could end a header.
_TOKEN = re.compile(r"[\x21-\x7e]+", re.ASCII)


@dataclass(frozen=True, repr=False)
class Credential:
    """One owner's OAuth access to one PagerDuty account.

    ``expires_at`` is when the access token expires (seconds since the epoch, as
    :class:`~pdconnect.oauth.TokenSet` has it). ``version`` grows by one on every change of
    the tokens, for compare-and-swap. ``needs_reauthorization_since`` is set when PagerDuty
    refused the refresh token for good: show "reconnect PagerDuty" to the owner. ``repr``
    never shows a token.
    """

    owner_id: str
    account: AccountIdentity
    access_token: str
    refresh_token: str | None
    expires_at: float
    scopes: frozenset[str]
    version: int = 1
    needs_reauthorization_since: datetime | None = None
    needs_reauthorization_reason: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def account_id(self) -> str:
        return self.account.account_id

    @property
    def needs_reauthorization(self) -> bool:
        """The owner must authorize again: the tokens no longer work and cannot be refreshed."""
        return self.needs_reauthorization_since is not None

    def expires_within(self, seconds: float, *, now: float) -> bool:
        """Whether the access token expires less than ``seconds`` after ``now``."""
        return self.expires_at - now < seconds

    def __repr__(self) -> str:
        mark = (
            f", needs re-authorisation since {self.needs_reauthorization_since.isoformat()}"
            if (self.needs_reauthorization_since)
            else ""
        )
        return (
            f"Credential(owner_id={self.owner_id!r}, account_id={self.account.account_id!r}, "
            f"subdomain={self.account.subdomain!r}, region={self.account.region!r}, "
            f"scopes={' '.join(sorted(self.scopes))!r}, version={self.version}{mark})"
        )

    __str__ = __repr__


class CredentialLock:
    """A credential held against concurrent changes, from :meth:`CredentialStore.locked`.

    ``current`` is the credential as read under the lock (``None`` when there is none). The
    changes go through the same lock and raise :class:`~pdconnect.errors.InvalidData` when
    there is no credential to change.
    """

    def __init__(
        self,
        current: Credential | None,
        replace: Callable[[Credential, TokenSet], Credential | None],
        mark: Callable[[Credential, str], Credential | None],
    ) -> None:
        self.current = current
        self._replace = replace
        self._mark = mark

    def __repr__(self) -> str:
        return f"CredentialLock({self.current!r})"

    def replace(self, tokens: TokenSet) -> Credential:
        """Store ``tokens`` (a refresh's answer) in place of the held credential's."""
        if self.current is None:
            raise InvalidData("there is no credential to replace")
        updated = self._replace(self.current, tokens)
        if updated is None:  # pragma: no cover - the lock keeps anyone else from changing the row
            raise InvalidData("the credential changed while it was locked")
        self.current = updated
        return updated

    def mark_needs_reauthorization(self, reason: str) -> Credential | None:
        """Mark the held credential; the marked credential, or ``None`` if it was marked already."""
        if self.current is None:
            raise InvalidData("there is no credential to mark")
        marked = self._mark(self.current, reason)
        if marked is not None:
            self.current = marked
        return marked


@runtime_checkable
class CredentialStore(Protocol):
    """Saving, reading and updating credentials, always within one owner's."""

    def save(self, owner_id: str, account: AccountIdentity, tokens: TokenSet) -> Credential:
        """Store a finished authorization; for an account the owner has already, replace it."""
        ...

    def get(self, owner_id: str, account_id: str) -> Credential | None:
        """The owner's credential for this account, or ``None`` (also for another owner's)."""
        ...

    def list_for_owner(self, owner_id: str) -> list[Credential]:
        """The owner's credentials, oldest first."""
        ...

    def delete(self, owner_id: str, account_id: str) -> bool:
        """Forget the owner's credential for this account; ``False`` if there was none."""
        ...

    def replace(self, credential: Credential, new_tokens: TokenSet, expected_version: int) -> Credential | None:
        """Store ``new_tokens`` if the stored version is still ``expected_version``, else ``None``.

        A ``new_tokens`` without a refresh token keeps the stored one; without scopes, the
        stored scopes. The new credential has the next version and no re-authorisation mark.
        """
        ...

    def mark_needs_reauthorization(
        self, owner_id: str, account_id: str, reason: str, *, expected_version: int | None = None
    ) -> Credential | None:
        """Mark the credential as needing re-authorisation, with a cleaned ``reason``.

        Returns the marked credential only when this call marked it (it was not marked yet,
        and with ``expected_version``, its version is still that): among racing callers
        exactly one is told, and can tell the owner.
        """
        ...

    def locked(self, owner_id: str, account_id: str) -> AbstractContextManager[CredentialLock]:
        """Hold the owner's credential for this account against every other thread and process."""
        ...


def _now() -> datetime:
    return datetime.now(UTC)


def _invalid(field: str, problem: str) -> InvalidData:
    return InvalidData(f"{field} {problem}", field=field)


def _check_text(value: object, field: str, max_length: int = 255) -> str:
    problem = text_problem(value, max_length=max_length)
    if problem is None and "\x00" in str(value):  # pragma: no cover - NUL is a control character
        problem = "contains control characters"
    if problem is not None:
        raise _invalid(field, problem)
    assert isinstance(value, str)
    return value


def check_token(value: object, field: str) -> str:
    """``value`` if it can be a bearer token: visible ASCII, 1 to 4096 characters."""
    if not isinstance(value, str):
        raise _invalid(field, "must be a string")
    if not value or len(value) > MAX_TOKEN_LENGTH or not _TOKEN.fullmatch(value):
        raise _invalid(field, f"must be 1 to {MAX_TOKEN_LENGTH} visible ASCII characters")
    return value


def check_scopes(scopes: object) -> frozenset[str]:
    """``scopes`` as a frozenset of RFC 6749 scope tokens (no spaces, quotes or backslashes)."""
    if isinstance(scopes, str) or not isinstance(scopes, frozenset | set | tuple | list):
        raise _invalid("scopes", "must be a set of strings")
    if len(scopes) > MAX_SCOPES:
        raise _invalid("scopes", f"must hold at most {MAX_SCOPES} scopes")
    for scope in scopes:
        if not isinstance(scope, str) or not _SCOPE.fullmatch(scope):
            raise _invalid("scopes", "must each be 1 to 200 visible ASCII characters without spaces, quotes or \\")
    return frozenset(scopes)


def parse_scopes(text: object) -> frozenset[str]:
    """Scopes from their stored form (space-separated); raises :class:`~pdconnect.errors.InvalidData`."""
    if not isinstance(text, str):
        raise _invalid("scopes", "must be a string")
    return check_scopes(text.split())


def _check_expiry(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _invalid("expires_at", "must be a finite number of seconds since the epoch")
    if not 0 <= value <= 1e11:
        raise _invalid("expires_at", "must be between 0 and 1e11 seconds since the epoch")
    return float(value)


def _check_account(account: AccountIdentity) -> None:
    for name in ("subdomain", "account_id", "user_id", "delegation_id"):
        _check_text(getattr(account, name, None), name)
    if account.region not in ("us", "eu"):
        raise _invalid("region", "must be 'us' or 'eu'")
    for name in ("rest_base_url", "events_base_url"):
        try:
            check_base_url(getattr(account, name, None), name=name)  # type: ignore[arg-type]
        except UnsafeURLError as exc:
            raise _invalid(name, "must be an absolute http(s) URL without query") from exc
        _check_text(getattr(account, name), name)


def new_credential(owner_id: str, account: AccountIdentity, tokens: TokenSet, *, version: int = 1) -> Credential:
    """A checked credential for a finished authorization; raises :class:`~pdconnect.errors.InvalidData`."""
    _check_text(owner_id, "owner_id")
    _check_account(account)
    now = _now()
    return Credential(
        owner_id=owner_id,
        account=account,
        access_token=check_token(tokens.access_token, "access_token"),
        refresh_token=None if tokens.refresh_token is None else check_token(tokens.refresh_token, "refresh_token"),
        expires_at=_check_expiry(tokens.expires_at),
        scopes=check_scopes(tokens.scopes),
        version=version,
        created_at=now,
        updated_at=now,
    )


def refreshed(credential: Credential, tokens: TokenSet) -> Credential:
    """``credential`` with a refresh's ``tokens``: the next version, the mark cleared."""
    return replace(
        credential,
        access_token=check_token(tokens.access_token, "access_token"),
        refresh_token=credential.refresh_token
        if tokens.refresh_token is None
        else check_token(tokens.refresh_token, "refresh_token"),
        expires_at=_check_expiry(tokens.expires_at),
        scopes=check_scopes(tokens.scopes) if tokens.scopes else credential.scopes,
        version=credential.version + 1,
        needs_reauthorization_since=None,
        needs_reauthorization_reason=None,
        updated_at=_now(),
    )


def reauthorization_reason(credential: Credential, reason: object) -> str:
    """``reason`` cleaned to store and show: one line, no token, at most 500 characters."""
    if isinstance(reason, str):
        # Longest first: a token inside the other would otherwise leave the rest of that one.
        for token in sorted(filter(None, (credential.access_token, credential.refresh_token)), key=len, reverse=True):
            reason = reason.replace(token, "****")
    return clean_reason(reason)


def _findable(*ids: object) -> bool:
    """Whether ids could name a stored credential (strings a database can take); else nothing is found."""
    for value in ids:
        if not isinstance(value, str) or "\x00" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


class _StripedLocks:
    """A fixed set of thread locks, one picked per key, so threads of one process queue in memory."""

    def __init__(self, stripes: int = 64) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    def for_key(self, *key: str) -> threading.Lock:
        digest = zlib.crc32("\x00".join(key).encode("utf-8", "surrogatepass"))
        return self._locks[digest % len(self._locks)]


class MemoryCredentialStore:
    """A :class:`CredentialStore` in this process's memory, for tests and demos (nothing at rest)."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], Credential] = {}
        self._lock = threading.RLock()
        self._row_locks = _StripedLocks()

    def __repr__(self) -> str:
        return f"MemoryCredentialStore({len(self._records)} credentials)"

    def save(self, owner_id: str, account: AccountIdentity, tokens: TokenSet) -> Credential:
        credential = new_credential(owner_id, account, tokens)
        with self._lock:
            existing = self._records.get((owner_id, account.account_id))
            if existing is not None:
                credential = replace(credential, version=existing.version + 1, created_at=existing.created_at)
            self._records[(owner_id, account.account_id)] = credential
        return credential

    def get(self, owner_id: str, account_id: str) -> Credential | None:
        with self._lock:
            return self._records.get((owner_id, account_id)) if _findable(owner_id, account_id) else None

    def list_for_owner(self, owner_id: str) -> list[Credential]:
        with self._lock:
            return [c for (owner, _), c in self._records.items() if owner == owner_id]

    def delete(self, owner_id: str, account_id: str) -> bool:
        with self._lock:
            return (
                self._records.pop((owner_id, account_id), None) is not None
                if _findable(owner_id, account_id)
                else False
            )

    def replace(self, credential: Credential, new_tokens: TokenSet, expected_version: int) -> Credential | None:
        with self._lock:
            stored = self.get(credential.owner_id, credential.account_id)
            if stored is None or stored.version != expected_version:
                return None
            updated = refreshed(stored, new_tokens)
            self._records[(stored.owner_id, stored.account_id)] = updated
            return updated

    def mark_needs_reauthorization(
        self, owner_id: str, account_id: str, reason: str, *, expected_version: int | None = None
    ) -> Credential | None:
        with self._lock:
            stored = self.get(owner_id, account_id)
            if stored is None or stored.needs_reauthorization:
                return None
            if expected_version is not None and stored.version != expected_version:
                return None
            marked = replace(
                stored,
                needs_reauthorization_since=_now(),
                needs_reauthorization_reason=reauthorization_reason(stored, reason),
                updated_at=_now(),
            )
            self._records[(owner_id, account_id)] = marked
            return marked

    @contextmanager
    def locked(self, owner_id: str, account_id: str) -> Iterator[CredentialLock]:
        with self._row_locks.for_key(str(owner_id), str(account_id)):
            yield CredentialLock(
                self.get(owner_id, account_id),
                lambda c, tokens: self.replace(c, tokens, c.version),
                lambda c, reason: self.mark_needs_reauthorization(
                    c.owner_id, c.account_id, reason, expected_version=c.version
                ),
            )


# Stored tokens say how they were stored, so a store never sends ciphertext as a token.
# "fernet:" (the first format) is the bare token; "fernet2:" seals it with the row it belongs to.
_ENCRYPTED, _BOUND, _PLAIN = "fernet:", "fernet2:", "plain:"
# What a bound token is sealed with: the row's key and where the token may be sent. Fernet has
# no associated data, so these travel inside the ciphertext and are compared on reading.
_BOUND_FIELDS = ("owner_id", "account_id", "region", "rest_base_url", "events_base_url")


class SqlCredentialStore:
    """A :class:`CredentialStore` in one SQL table, through SQLAlchemy Core.

    ``engine`` is an engine or a URL. ``cipher`` (a
    :class:`~pdconnect.oauth.cipher.TokenCipher`, or anything with ``encrypt`` and
    ``decrypt``) encrypts both tokens; without one the store raises
    :class:`~pdconnect.errors.ConfigError` unless ``insecure_plaintext=True``. The table is
    created when missing unless ``create_tables`` is false.
    """

    def __init__(
        self,
        engine: sa.Engine | str,
        *,
        cipher: KeyCipher | None = None,
        insecure_plaintext: bool = False,
        table_name: str = "pdconnect_oauth_credentials",
        create_tables: bool = True,
    ) -> None:
        if cipher is None and insecure_plaintext is not True:
            raise ConfigError(
                f"storing OAuth tokens needs a cipher: set {TOKEN_KEYS_SETTING} (a key from "
                "TokenCipher.generate_key()), or pass insecure_plaintext=True for a demo",
                setting=TOKEN_KEYS_SETTING,
            )
        self.engine = engine_for(engine)
        self.cipher = cipher
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._row_locks = _StripedLocks()
        self.metadata = sa.MetaData()
        text = sa.String(255)
        self.table = sa.Table(
            table_name,
            self.metadata,
            sa.Column("owner_id", text, primary_key=True),
            sa.Column("account_id", text, primary_key=True),
            sa.Column("subdomain", text, nullable=False),
            sa.Column("user_id", text, nullable=False),
            sa.Column("delegation_id", text, nullable=False),
            sa.Column("region", sa.String(8), nullable=False),
            sa.Column("rest_base_url", text, nullable=False),
            sa.Column("events_base_url", text, nullable=False),
            sa.Column("access_token", sa.Text, nullable=False),
            sa.Column("refresh_token", sa.Text),
            sa.Column("expires_at", sa.Float(precision=53), nullable=False),
            sa.Column("scopes", sa.Text, nullable=False),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("needs_reauthorization_since", sa.DateTime(timezone=True)),
            sa.Column("needs_reauthorization_reason", sa.String(500)),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        )
        if create_tables:
            self.create_tables()

    def create_tables(self) -> None:
        """Create the table if it does not exist (safe to run again, and from several processes)."""
        create_all(self.metadata, self.engine)

    def __repr__(self) -> str:
        url = shown_url(self.engine.url)
        return f"SqlCredentialStore({url!r}, table={self.table.name!r}, encrypted={self.cipher is not None})"

    # -- rows <-> credentials ----------------------------------------------------------------

    def _seal(self, token: str | None, binding: dict[str, str]) -> str | None:
        """``token`` as stored: encrypted together with ``binding`` (the row's ids and bases)."""
        if token is None:
            return None
        if self.cipher is None:
            return _PLAIN + token
        return _BOUND + self.cipher.encrypt(json.dumps({**binding, "token": token}, sort_keys=True))

    def _open(self, stored: str | None, binding: dict[str, str]) -> str | None:
        """The token ``stored`` holds; raises :class:`TokenDecryptionError` if it is not this row's.

        With a cipher configured, a token in clear is refused, and a bound token must name this
        row's owner, account, region and bases: someone who can write the table but has no key
        can neither plant a token, nor copy one from another row, nor steer one to another host.
        """
        if stored is None:
            return None
        if stored.startswith(_PLAIN):
            if self.cipher is not None:
                raise TokenDecryptionError(
                    f"a stored token is in clear although {TOKEN_KEYS_SETTING} is set (reconnect the account)"
                )
            return stored[len(_PLAIN) :]
        if not stored.startswith((_ENCRYPTED, _BOUND)):
            raise TokenDecryptionError("a stored token is in no known form")
        if self.cipher is None:
            raise TokenDecryptionError(f"the stored tokens are encrypted: configure {TOKEN_KEYS_SETTING}")
        if stored.startswith(_ENCRYPTED):
            return self.cipher.decrypt(stored[len(_ENCRYPTED) :])
        try:
            sealed = json.loads(self.cipher.decrypt(stored[len(_BOUND) :]))
        except (ValueError, RecursionError):
            sealed = None
        token = sealed.get("token") if isinstance(sealed, dict) else None
        if not isinstance(token, str) or any(sealed.get(name) != binding[name] for name in _BOUND_FIELDS):
            raise TokenDecryptionError("a stored token does not belong to its row (was the table edited?)")
        return token

    @staticmethod
    def _binding(owner_id: str, account_id: str, region: str, rest: str, events: str) -> dict[str, str]:
        return dict(zip(_BOUND_FIELDS, (owner_id, account_id, region, rest, events), strict=True))

    def _row(self, credential: Credential) -> dict[str, Any]:
        account = credential.account
        binding = self._binding(
            credential.owner_id, account.account_id, account.region, account.rest_base_url, account.events_base_url
        )
        return {
            "owner_id": credential.owner_id,
            "account_id": account.account_id,
            "subdomain": account.subdomain,
            "user_id": account.user_id,
            "delegation_id": account.delegation_id,
            "region": account.region,
            "rest_base_url": account.rest_base_url,
            "events_base_url": account.events_base_url,
            "access_token": self._seal(credential.access_token, binding),
            "refresh_token": self._seal(credential.refresh_token, binding),
            "expires_at": credential.expires_at,
            "scopes": " ".join(sorted(credential.scopes)),
            "version": credential.version,
            "needs_reauthorization_since": credential.needs_reauthorization_since,
            "needs_reauthorization_reason": credential.needs_reauthorization_reason,
            "created_at": credential.created_at if credential.created_at is not None else _now(),
            "updated_at": credential.updated_at if credential.updated_at is not None else _now(),
        }

    def _credential(self, row: sa.Row[Any]) -> Credential:
        data = row._mapping
        account = AccountIdentity(
            subdomain=data["subdomain"],
            account_id=data["account_id"],
            user_id=data["user_id"],
            delegation_id=data["delegation_id"],
            region=data["region"],
            rest_base_url=data["rest_base_url"],
            events_base_url=data["events_base_url"],
        )
        binding = self._binding(
            data["owner_id"], data["account_id"], data["region"], data["rest_base_url"], data["events_base_url"]
        )
        access = self._open(data["access_token"], binding)
        assert access is not None  # the column is NOT NULL
        return Credential(
            owner_id=data["owner_id"],
            account=account,
            access_token=access,
            refresh_token=self._open(data["refresh_token"], binding),
            expires_at=float(data["expires_at"]),
            scopes=parse_scopes(data["scopes"]),
            version=int(data["version"]),
            needs_reauthorization_since=as_utc(data["needs_reauthorization_since"]),
            needs_reauthorization_reason=data["needs_reauthorization_reason"],
            created_at=as_utc(data["created_at"]),
            updated_at=as_utc(data["updated_at"]),
        )

    def _key(self, owner_id: str, account_id: str) -> sa.ColumnElement[bool]:
        return sa.and_(self.table.c.owner_id == owner_id, self.table.c.account_id == account_id)

    def _read(self, conn: sa.Connection, owner_id: str, account_id: str, *, lock: bool = False) -> Credential | None:
        if not _findable(owner_id, account_id):
            return None
        query = sa.select(self.table).where(self._key(owner_id, account_id))
        if lock and not self._sqlite:
            query = query.with_for_update()
        row = conn.execute(query).one_or_none()
        return self._credential(row) if row is not None else None

    def _write(self, conn: sa.Connection, credential: Credential, expected_version: int | None) -> bool:
        """Insert (``expected_version`` ``None``) or compare-and-swap update; ``False`` if the version moved."""
        row = self._row(credential)
        for name, value in row.items():
            width = getattr(self.table.c[name].type, "length", None)
            if isinstance(value, str) and isinstance(width, int) and len(value) > width:
                raise _invalid(name, f"must be at most {width} characters")
        try:
            if expected_version is None:
                conn.execute(sa.insert(self.table).values(**row))
                return True
            result = conn.execute(
                sa.update(self.table)
                .where(self._key(credential.owner_id, credential.account_id), self.table.c.version == expected_version)
                .values(**row)
            )
        except DataError as exc:  # PostgreSQL: text it cannot store
            raise InvalidData("the database refused this credential's values") from exc
        return bool(result.rowcount)

    # -- the interface -----------------------------------------------------------------------

    def save(self, owner_id: str, account: AccountIdentity, tokens: TokenSet) -> Credential:
        """Insert or replace the owner's credential for the account; raises :class:`~pdconnect.errors.InvalidData`."""
        credential = new_credential(owner_id, account, tokens)
        for _ in range(3):
            try:
                with self._transaction() as conn:
                    existing = self._read(conn, owner_id, account.account_id, lock=True)
                    if existing is None:
                        self._write(conn, credential, None)
                        return credential
                    updated = replace(credential, version=existing.version + 1, created_at=existing.created_at)
                    if self._write(conn, updated, existing.version):
                        return updated
            except IntegrityError:
                continue  # another process inserted the same account first: update it on the next pass
        raise InvalidData("saving this credential conflicted three times with other writers")

    def get(self, owner_id: str, account_id: str) -> Credential | None:
        with self.engine.connect() as conn:
            return self._read(conn, owner_id, account_id)

    def list_for_owner(self, owner_id: str) -> list[Credential]:
        if not _findable(owner_id):
            return []
        query = (
            sa.select(self.table)
            .where(self.table.c.owner_id == owner_id)
            .order_by(self.table.c.created_at, self.table.c.account_id)
        )
        with self.engine.connect() as conn:
            return [self._credential(row) for row in conn.execute(query)]

    def delete(self, owner_id: str, account_id: str) -> bool:
        if not _findable(owner_id, account_id):
            return False
        with self.engine.begin() as conn:
            return bool(conn.execute(sa.delete(self.table).where(self._key(owner_id, account_id))).rowcount)

    def replace(self, credential: Credential, new_tokens: TokenSet, expected_version: int) -> Credential | None:
        with self.engine.begin() as conn:
            return self._replace(conn, credential, new_tokens, expected_version)

    def _replace(
        self, conn: sa.Connection, credential: Credential, new_tokens: TokenSet, expected_version: int
    ) -> Credential | None:
        stored = self._read(conn, credential.owner_id, credential.account_id)
        if stored is None or stored.version != expected_version:
            return None
        updated = refreshed(stored, new_tokens)
        return updated if self._write(conn, updated, expected_version) else None

    def mark_needs_reauthorization(
        self, owner_id: str, account_id: str, reason: str, *, expected_version: int | None = None
    ) -> Credential | None:
        with self.engine.begin() as conn:
            return self._mark(conn, owner_id, account_id, reason, expected_version)

    def _mark(
        self, conn: sa.Connection, owner_id: str, account_id: str, reason: str, expected_version: int | None
    ) -> Credential | None:
        stored = self._read(conn, owner_id, account_id)
        if stored is None or stored.needs_reauthorization:
            return None
        if expected_version is not None and stored.version != expected_version:
            return None
        now = _now()
        cleaned = reauthorization_reason(stored, reason)
        # Conditional on the version as read and on not being marked yet: of racing callers, one marks.
        result = conn.execute(
            sa.update(self.table)
            .where(
                self._key(owner_id, account_id),
                self.table.c.version == stored.version,
                self.table.c.needs_reauthorization_since.is_(None),
            )
            .values(needs_reauthorization_since=now, needs_reauthorization_reason=cleaned, updated_at=now)
        )
        if not result.rowcount:
            return None
        return replace(stored, needs_reauthorization_since=now, needs_reauthorization_reason=cleaned, updated_at=now)

    @contextmanager
    def locked(self, owner_id: str, account_id: str) -> Iterator[CredentialLock]:
        """Hold the row: ``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite.

        On SQLite that holds the database's write lock (SQLite has no row locks), so other
        writers wait, up to the engine's busy timeout, while the holder refreshes.
        """
        with self._row_locks.for_key(str(owner_id), str(account_id)), self._transaction() as conn:
            yield CredentialLock(
                self._read(conn, owner_id, account_id, lock=True),
                lambda c, tokens: self._replace(conn, c, tokens, c.version),
                lambda c, reason: self._mark(conn, c.owner_id, c.account_id, reason, c.version),
            )

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        """A write transaction; on SQLite one that takes the write lock at once (``BEGIN IMMEDIATE``).

        pysqlite's own ``BEGIN`` is deferred: two readers that both decide to write would
        deadlock into "database is locked". With the driver told to stay out of the way
        (autocommit), the transaction is issued by hand.
        """
        if not self._sqlite:
            with self.engine.begin() as conn:
                yield conn
            return
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")

    def rotate_keys(self) -> int:
        """Re-encrypt every stored token under the cipher's first key; returns how many rows changed.

        Run after putting a new key first in ``PDCONNECT_TOKEN_KEYS``; then the old key can go.
        It also seals tokens of the first format (``fernet:``, the bare token) with their row.
        A row whose tokens changed meanwhile is left as it is (it is under the new key already).
        """
        if self.cipher is None:
            return 0
        table, changed = self.table, 0
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.owner_id, table.c.account_id, table.c.version)).all()
        for owner_id, account_id, version in rows:
            with self._transaction() as conn:
                credential = self._read(conn, owner_id, account_id)
                if credential is None or credential.version != version:
                    continue
                row = self._row(credential)
                sealed = {name: row[name] for name in ("access_token", "refresh_token")}
                result = conn.execute(
                    sa.update(table).where(self._key(owner_id, account_id), table.c.version == version).values(sealed)
                )
                changed += result.rowcount
        return changed
