"""A REST error never quotes a token PagerDuty echoes back, not even one another worker rotated away.

PagerDuty's error messages may repeat what the request carried. The client cuts the
credential's tokens out of them; the token a request was *sent* with may no longer be the
stored one by the time the answer is read (another thread or process refreshed meanwhile), so
it must be cut out as well.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdconnect.oauth.credentials import MemoryCredentialStore
from pdconnect.oauth.refresh import TokenRefresher
from pdconnect.rest.client import AccountRestClient
from pdconnect.rest.errors import RestError
from pdconnect.retry import RetryPolicy
from pdconnect.transport import HttpResponse
from tests.oauth.credentials_helpers import ACCOUNT, NOW, FakeOAuth, token_set

NO_WAIT = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0, deadline=60.0, rate_limit_delay=0.0)


class EchoAfterARefreshElsewhere:
    """Answers ``status`` quoting the Bearer token it got, after the stored tokens were rotated."""

    def __init__(self, store: MemoryCredentialStore, status: int, rotated_access: str) -> None:
        self.store, self.status, self.rotated_access = store, status, rotated_access
        self.sent: list[str] = []

    def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: tuple[float, float]
    ) -> HttpResponse:
        sent = headers["Authorization"].removeprefix("Bearer ")
        self.sent.append(sent)
        current = self.store.get("o", ACCOUNT.account_id)
        assert current is not None
        if current.access_token == sent:  # another worker refreshes while this request is out
            self.store.replace(current, token_set(access=self.rotated_access), current.version)
        said = f"Token {sent} is not valid here"
        error = {"error": {"message": said, "code": 2001, "errors": [said, f"Bearer {sent}"]}}
        return HttpResponse(status=self.status, body=json.dumps(error).encode(), headers={})


def _refused(status: int, sent: str, rotated: str) -> tuple[RestError, list[str]]:
    store = MemoryCredentialStore()
    store.save("o", ACCOUNT, token_set(access=sent))
    refresher = TokenRefresher(store, FakeOAuth(), clock=lambda: NOW)
    transport = EchoAfterARefreshElsewhere(store, status, rotated)
    client = AccountRestClient(refresher, "o", ACCOUNT.account_id, transport=transport, retry=NO_WAIT, sleep=id)
    with pytest.raises(RestError) as raised:
        client.list_services()
    return raised.value, transport.sent


def _said(error: RestError) -> str:
    return "\n".join([str(error), repr(error), repr(error.args), str(error.pagerduty_message), repr(error.errors)])


@pytest.mark.parametrize("status", [400, 402, 403, 404, 409, 422, 429, 500, 503])
def test_the_token_a_request_was_sent_with_is_cut_from_the_error(status: int) -> None:
    sent_token, rotated = "pdus+_0SentWithTheRequest4Ab", "pdus+_0RotatedMeanwhile9Zq"
    error, sent = _refused(status, sent_token, rotated)
    assert sent[0] == sent_token, "the request went out with the token stored when it started"
    said = _said(error)
    assert "is not valid here" in said or status in (429, 500, 503)
    for token in sent:
        assert token not in said and token[6:] not in said, said


@settings(max_examples=50)
@given(
    sent=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=12, max_size=120),
    status=st.sampled_from([400, 403, 404, 409]),
)
def test_any_sent_token_is_cut_from_the_error(sent: str, status: int) -> None:
    error, tokens = _refused(status, sent, "pdus+_0RotatedMeanwhile9Zq")
    said = _said(error).replace("Token **** is not valid here", "")
    for token in tokens:
        assert token not in said, said
