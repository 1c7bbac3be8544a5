"""Acme's page actions for PagerDuty accounts connected through OAuth (each user's own accounts).

pdconnect's routes connect and disconnect an account; Acme adds "Check access": one REST call
(list the account's services) with that account's own token. It is also how a user learns
that the customer revoked Acme's access: the call's refresh fails for good, pdconnect marks
the connection "needs re-authorisation", and every page shows the reconnect banner.
"""

from __future__ import annotations

import logging
from typing import cast

from flask import Flask, abort, flash, redirect, url_for
from flask.typing import ResponseReturnValue

from example_app.views import bp, current_owner, signed_in
from pdconnect.errors import PdConnectError
from pdconnect.flask import current_pagerduty, needs_reauthorization
from pdconnect.oauth import Credential, NeedsReauthorization, TokenDecryptionError

logger = logging.getLogger("example_app")

#: Longer than any PagerDuty account id; a longer one in the URL is no account of this user.
_MAX_ACCOUNT_ID = 255


@bp.route("/settings/pagerduty/accounts/<account_id>/check", methods=["POST"])
@signed_in
def check_account(account_id: str) -> ResponseReturnValue:
    """List the account's services with its own token and say what PagerDuty answered."""
    connections = current_pagerduty().connections
    owner = cast(str, current_owner())
    if connections is None or len(account_id) > _MAX_ACCOUNT_ID:
        abort(404)
    try:
        credential = connections.credentials.get(owner, account_id)
    except TokenDecryptionError:
        # The key that encrypted the tokens left PDCONNECT_TOKEN_KEYS before the rows were
        # rotated (pdconnect logs it): nothing can be called with them, but the user can reconnect.
        flash("Acme cannot read its stored access to this PagerDuty account: connect it again.", "error")
        return redirect(url_for("acme.pagerduty_settings"), 303)
    if credential is None:  # not connected, or another user's: the same answer
        abort(404)
    subdomain = credential.account.subdomain
    try:
        with connections.rest_client(owner, account_id) as client:
            services = client.list_services()
    except NeedsReauthorization:
        flash(f"PagerDuty no longer accepts Acme's access to {subdomain}: reconnect it.", "error")
    except PdConnectError as exc:  # RestError and its kinds: PagerDuty down, a scope or role missing
        flash(f"PagerDuty did not answer for {subdomain}: {exc}", "error")
    else:
        count = len(services)
        flash(f"{subdomain} answers: Acme can see {count} service{'' if count == 1 else 's'}.", "success")
    return redirect(url_for("acme.pagerduty_settings"), 303)


def install(app: Flask) -> None:
    """Log when a customer's connection needs re-authorisation (a real product would email them)."""

    @needs_reauthorization.connect_via(app)
    def tell_the_owner(sender: Flask, *, credential: Credential, owner_id: str) -> None:
        logger.warning(
            "PagerDuty refused the connection to %s (owner %s): they are asked to reconnect",
            credential.account.subdomain,
            owner_id,
        )
