"""No token, code, verifier, state or client secret in any log record, repr or error message."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from pdconnect.errors import PdConnectError
from pdconnect.oauth import PagerDutyOAuth
from tests.oauth.fake_identity import CLIENT_SECRET, FakeIdentity


class Everything(logging.Handler):
    """Every record of every logger, formatted, with its arguments and exception text."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))
        self.texts.append(repr(record.args))
        self.texts.append(repr(record.__dict__))


@pytest.fixture
def logs() -> Iterator[Everything]:
    handler = Everything()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    levels = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_level)
    for lg, level in levels:
        lg.setLevel(level)


def test_nothing_secret_is_logged_shown_or_raised(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, logs: Everything
) -> None:
    shown: list[str] = []
    secrets_seen: set[str] = {CLIENT_SECRET}

    start = oauth.authorize(owner_id="u", session_binding=binding)
    callback = identity.approve(start.url)
    secrets_seen |= {start.state, parse_qs(callback)["code"][0]}
    done = oauth.finish(callback, owner_id="u", session_binding=binding)
    secrets_seen.add(identity.token_calls[-1]["code_verifier"])
    assert done.tokens.refresh_token is not None and done.tokens.id_token is not None
    secrets_seen |= {done.tokens.access_token, done.tokens.refresh_token, done.tokens.id_token}
    fresh = oauth.refresh(done.tokens.refresh_token)
    assert fresh.refresh_token is not None
    secrets_seen |= {fresh.access_token, fresh.refresh_token}
    shown += [repr(x) for x in (start, done, done.tokens, fresh, oauth, oauth.app, oauth.states, oauth.keys)]
    shown += [str(x) for x in (done.tokens, fresh)]

    # Failures: a replayed callback, a dead refresh token, an endpoint that echoes what it got.
    for attempt in (
        lambda: oauth.finish(callback, owner_id="u", session_binding=binding),
        lambda: oauth.refresh(done.tokens.refresh_token or ""),
    ):
        with pytest.raises(PdConnectError) as caught:
            attempt()
        shown += [str(caught.value), repr(caught.value)]
    identity.token_override = lambda form: (
        400,
        {},
        json.dumps({"error": "invalid_grant", "error_description": f"bad {form} {CLIENT_SECRET}"}).encode(),
    )
    with pytest.raises(PdConnectError) as caught:
        oauth.refresh(fresh.refresh_token)
    shown += [str(caught.value), repr(caught.value)]
    identity.token_override = lambda form: (200, {}, json.dumps({"access_token": fresh.access_token}).encode())
    with pytest.raises(PdConnectError) as caught:
        oauth.refresh(fresh.refresh_token)
    shown += [str(caught.value), repr(caught.value)]

    assert logs.texts, "the flow logs nothing at DEBUG: the capture is broken"
    for secret in secrets_seen:
        for text in logs.texts + shown:
            assert secret not in text
    # The authorize URL holds the state and the challenge, never the verifier.
    query = parse_qs(urlsplit(start.url).query)
    assert identity.token_calls[0]["code_verifier"] not in start.url
    assert set(query) == {
        "client_id",
        "redirect_uri",
        "response_type",
        "scope",
        "code_challenge",
        "code_challenge_method",
        "state",
    }
