"""The identity server's pages: sign in as a user of an account, then approve or deny an app.

Rendered with markupsafe like the rest of the sandbox's pages (every value escaped; an app's
name is the app author's text). Elements carry ``data-`` attributes for browser tests.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

from pdconnect.sandbox.identity.authorize import AuthorizeRequest
from pdconnect.sandbox.identity.core import UserInfo
from pdconnect.sandbox.pages import hidden, join, page


def signin_page(request: AuthorizeRequest, users: Sequence[UserInfo]) -> str:
    """Step one: pick the account and user to sign in as (the sandbox has no passwords)."""
    accounts = sorted({u.account_id for u in users})
    groups = join(
        Markup('<optgroup label="{account}">{options}</optgroup>').format(
            account=account,
            options=join(
                Markup('<option value="{id}">{name} ({role}) · {email}</option>').format(
                    id=u.id, name=u.name, role=u.role, email=u.email
                )
                for u in users
                if u.account_id == account
            ),
        )
        for account in accounts
    )
    if users:
        picker = Markup(
            '<label for="user">Sign in as</label><select id="user" name="user" required>{groups}</select>'
            '<p><button class="primary" type="submit" name="decision" value="signin">Sign in</button> '
        ).format(groups=groups)
    else:
        picker = Markup(
            '<p class="muted" data-no-users>No account has users yet: add one with '
            "<code>POST /_sandbox/api/oauth/users</code>.</p><p>"
        )
    body = Markup(
        "<section><p>Sign in to PagerDuty to authorize <strong data-app>{app}</strong>.</p>"
        '<form method="post" action="/oauth/authorize">{carry}{picker}'
        '<button type="submit" name="decision" value="cancel" formnovalidate>Cancel</button></p>'
        "</form></section>"
    ).format(app=request.app.name, carry=hidden(request.carry()), picker=picker)
    return page("Sign in to PagerDuty", body)


def consent_page(request: AuthorizeRequest, user: UserInfo, *, csrf: str, refusal: str | None = None) -> str:
    """Step two: the app, the account, the scopes it would get; approve or deny.

    ``refusal`` says why this user cannot approve (a Scoped app of another account): the
    page then offers only Deny and signing in as someone else.
    """
    requested = request.scope.split(" ") if request.scope else []
    granted = request.granted()
    scope_items = join(
        Markup('<li data-scope="{0}"><code>{0}</code></li>').format(scope)
        for scope in sorted(granted, key=lambda s: (s != "openid", s))
    )
    dropped = (
        Markup(
            '<p class="notice" data-scopes-dropped>This app asked for scopes it is not registered for '
            "({requested}): only <code>openid</code> will be granted.</p>"
        ).format(requested=" ".join(requested))
        if set(requested) - granted
        else ""
    )
    approve = (
        Markup('<button class="primary" type="submit" name="decision" value="approve">Approve</button> ')
        if refusal is None
        else Markup('<p class="error" data-refusal>{}</p>').format(refusal)
    )
    body = Markup(
        "<section><p>Signed in as <strong data-user>{user}</strong> ({role}) of "
        "<strong data-account>{account}</strong>.</p>"
        "<p><strong data-app>{app}</strong> would like to access this PagerDuty account with these scopes:</p>"
        "<ul>{scopes}</ul>{dropped}"
        '<form method="post" action="/oauth/authorize">{carry}'
        '<input type="hidden" name="csrf_token" value="{csrf}">'
        '{approve}<button type="submit" name="decision" value="deny">Deny</button> '
        '<button type="submit" name="decision" value="signout">Sign in as someone else</button>'
        "</form></section>"
    ).format(
        user=user.name,
        role=user.role,
        account=user.account_id,
        app=request.app.name,
        scopes=scope_items,
        dropped=dropped,
        carry=hidden(request.carry()),
        csrf=csrf,
        approve=approve,
    )
    return page("Authorize an app", body)
