"""OAuth access tokens for REST tests, issued by the sandbox's real identity server.

Going through the consent page for every token would make a table of credential kinds
slow and long; this records an authorisation the way the token endpoint does and asks the
identity server for its tokens, so :meth:`Identity.bearer` resolves them exactly as it does
tokens from the real flow (``tests/sandbox/identity`` covers that flow itself).
"""

from __future__ import annotations

from collections.abc import Iterable

from pdconnect.sandbox import Sandbox
from pdconnect.sandbox.identity.core import new_delegation_id
from pdconnect.sandbox.identity.model import Authorization

REDIRECT = "http://127.0.0.1:9/callback"


def bearer(
    sandbox: Sandbox,
    account: str,
    *,
    scopes: Iterable[str],
    kind: str = "classic",
    user_id: str | None = None,
    role: str | None = None,
) -> str:
    """An access token of ``account`` with ``scopes`` (``Bearer`` value), for a user with ``role``.

    Without ``user_id``, a new user with ``role`` (``manager`` unless told) is added to the
    account; with ``kind="scoped"`` and ``role=None`` it is an app token (no user).
    """
    identity = sandbox.identity
    if user_id is None and (kind == "classic" or role is not None):
        chosen = role if role is not None else "manager"
        count = len(identity.users(account))
        user = identity.add_user(account, name=f"Grant User {count}", email=f"u{count}@{account}.example", role=chosen)
        user_id = user.id
    granted = frozenset({"openid", *scopes})
    allowed = ["read", "write"] if kind == "classic" else sorted(granted - {"openid"}) or ["services.read"]
    app = identity.register_app(account, name="REST test app", redirect_urls=[REDIRECT], kind=kind, scopes=allowed)
    core = identity.core
    with core.registry.lock:
        authorization = Authorization(
            delegation_id=new_delegation_id(),
            client_id=app.client_id,
            account_id=account,
            user_id=user_id,
            scopes=granted,
            created_at=core.clock(),
        )
        core.registry.authorizations[authorization.delegation_id] = authorization
        answer = core.issue(app, authorization, access_seconds=3600, refresh=False, id_token=False)
    return str(answer["access_token"])
