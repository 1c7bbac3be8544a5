from __future__ import annotations

import contextlib
import json
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect import Cancelled, Connected, Handshake, Origin, Region, SqlNonceStore, new_session_binding
from pdconnect.errors import (
    CallbackError,
    HandshakeFailed,
    PdConnectError,
    StateExpired,
    StateInvalid,
    StateOwnerMismatch,
    StateReplayed,
    StateSessionMismatch,
    UnsafeURLError,
)
from tests.conftest import APP_ID, CALLBACK_URL, REDIRECT_URL, SECRET, SERVICE_KEY, VENDOR_KEY, FakeClock

CONNECT_PARAMS = {"account": "acme", "service_key": SERVICE_KEY, "service_name": "Web"}
CONFIG = {"integration_keys": [{"integration_key": SERVICE_KEY, "name": "Web", "id": "P1", "type": "service"}],
          "account": {"subdomain": "acme", "name": "Acme"}}  # fmt: skip


def _connect_callback(url: str) -> str:
    """What PagerDuty would do: take the callback out of the Connect URL."""
    query = parse_qs(urlsplit(url).query)
    assert query["vendor"] == [VENDOR_KEY]
    return query["callback"][0]


def _install_redirect(url: str) -> str:
    query = parse_qs(urlsplit(url).query)
    assert query["app_id"] == [APP_ID]
    assert query["version"] == ["2"]
    return query["redirect_url"][0]


def _path_state(callback: str) -> str:
    return urlsplit(callback).path.rsplit("/", 1)[1]


def _query_state(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


def test_connect_handshake_with_state_in_the_path(handshake: Handshake, binding: str) -> None:
    url = handshake.connect_url(CALLBACK_URL, owner_id="user-1", session_binding=binding)
    callback = _connect_callback(url)
    assert callback.startswith(CALLBACK_URL + "/")
    outcome = handshake.complete(urlencode(CONNECT_PARAMS), session_binding=binding, state=_path_state(callback))
    assert isinstance(outcome, Connected)
    assert outcome.owner_id == "user-1"
    assert outcome.integration.integration_key == SERVICE_KEY
    assert outcome.integration.origin is Origin.CONNECT


def test_connect_handshake_with_state_in_the_query(handshake: Handshake, binding: str) -> None:
    url = handshake.connect_url(CALLBACK_URL + "?tenant=3", owner_id="u", session_binding=binding, state_in_path=False)
    callback = _connect_callback(url)
    assert urlsplit(callback).path == "/pagerduty/callback"
    query = urlsplit(callback).query + "&" + urlencode(CONNECT_PARAMS)
    outcome = handshake.complete(query, session_binding=binding, region=Region.EU)
    assert isinstance(outcome, Connected)
    assert outcome.integration.region is Region.EU


def test_install_handshake(handshake: Handshake, binding: str) -> None:
    url = handshake.install_url(REDIRECT_URL + "?tenant=3", owner_id="org-1", session_binding=binding)
    redirect = _install_redirect(url)
    assert parse_qs(urlsplit(redirect).query)["tenant"] == ["3"]
    # PagerDuty appends config to the redirect URL, keeping its query.
    query = urlsplit(redirect).query + "&" + urlencode({"config": json.dumps(CONFIG)})
    outcome = handshake.complete(query, session_binding=binding, owner_id="org-1")
    assert isinstance(outcome, Connected)
    assert outcome.flow is Origin.INSTALL
    assert outcome.integration.account_name == "Acme"


def test_install_on_a_subdomain(handshake: Handshake, binding: str) -> None:
    url = handshake.install_url(REDIRECT_URL, owner_id="o", session_binding=binding, subdomain="acme")
    assert url.startswith("https://acme.pagerduty.com/install/integration?")


def test_sandbox_base_urls(clock: FakeClock, binding: str) -> None:
    handshake = Handshake(
        secret=SECRET,
        vendor_key=VENDOR_KEY,
        app_id=APP_ID,
        connect_base_url="http://127.0.0.1:8765",
        install_base_url="http://127.0.0.1:8765",
    )
    assert handshake.connect_url(CALLBACK_URL, owner_id="o", session_binding=binding).startswith(
        "http://127.0.0.1:8765/connect?"
    )
    assert handshake.install_url(REDIRECT_URL, owner_id="o", session_binding=binding).startswith(
        "http://127.0.0.1:8765/install/integration?"
    )
    # A subdomain names a host of PagerDuty's own: against the sandbox it is ignored, so a
    # test never sends a browser to pagerduty.com.
    assert handshake.install_url(REDIRECT_URL, owner_id="o", session_binding=binding, subdomain="acme").startswith(
        "http://127.0.0.1:8765/install/integration?"
    )


def test_cancel_is_verified_then_returned(handshake: Handshake, binding: str) -> None:
    url = handshake.connect_url(CALLBACK_URL, owner_id="u", session_binding=binding)
    state = _path_state(_connect_callback(url))
    outcome = handshake.complete("error=cancelled", session_binding=binding, state=state)
    assert outcome == Cancelled(owner_id="u", flow=Origin.CONNECT)
    with pytest.raises(StateReplayed):
        handshake.complete("error=cancelled", session_binding=binding, state=state)


def test_other_error_values_are_typed_failures(handshake: Handshake, binding: str) -> None:
    state = _path_state(_connect_callback(handshake.connect_url(CALLBACK_URL, owner_id="u", session_binding=binding)))
    with pytest.raises(HandshakeFailed, match="server_error"):
        handshake.complete("error=server_error", session_binding=binding, state=state)


def test_replayed_callback(handshake: Handshake, binding: str) -> None:
    state = _path_state(_connect_callback(handshake.connect_url(CALLBACK_URL, owner_id="u", session_binding=binding)))
    handshake.complete(urlencode(CONNECT_PARAMS), session_binding=binding, state=state)
    with pytest.raises(StateReplayed):
        handshake.complete(urlencode(CONNECT_PARAMS), session_binding=binding, state=state)


def test_expired_callback(handshake: Handshake, binding: str, clock: FakeClock) -> None:
    state = _path_state(_connect_callback(handshake.connect_url(CALLBACK_URL, owner_id="u", session_binding=binding)))
    clock.advance(601)
    with pytest.raises(StateExpired):
        handshake.complete(urlencode(CONNECT_PARAMS), session_binding=binding, state=state)


def test_callback_from_another_browser_session(handshake: Handshake, binding: str) -> None:
    state = _path_state(_connect_callback(handshake.connect_url(CALLBACK_URL, owner_id="u", session_binding=binding)))
    with pytest.raises(StateSessionMismatch):
        handshake.complete(urlencode(CONNECT_PARAMS), session_binding=new_session_binding(), state=state)


def test_callback_for_another_owner(handshake: Handshake, binding: str) -> None:
    url = handshake.install_url(REDIRECT_URL, owner_id="org-1", session_binding=binding)
    query = urlsplit(_install_redirect(url)).query + "&" + urlencode({"config": json.dumps(CONFIG)})
    with pytest.raises(StateOwnerMismatch):
        handshake.complete(query, session_binding=binding, owner_id="org-2")


def test_forged_config_without_state(handshake: Handshake, binding: str) -> None:
    with pytest.raises(StateInvalid, match="missing"):
        handshake.complete(urlencode({"config": json.dumps(CONFIG)}), session_binding=binding)


def test_repeated_state(handshake: Handshake, binding: str) -> None:
    with pytest.raises(CallbackError, match="repeats the 'state'"):
        handshake.complete("state=a&state=b", session_binding=binding)


def test_several_tabs_at_once(handshake: Handshake, binding: str) -> None:
    urls = [handshake.install_url(REDIRECT_URL, owner_id="o", session_binding=binding) for _ in range(3)]
    urls.append(handshake.connect_url(CALLBACK_URL, owner_id="o", session_binding=binding))
    # Finish them in another order than they were started.
    connect_state = _path_state(_connect_callback(urls[3]))
    assert isinstance(
        handshake.complete(urlencode(CONNECT_PARAMS), session_binding=binding, state=connect_state), Connected
    )
    for url in reversed(urls[:3]):
        query = urlsplit(_install_redirect(url)).query + "&" + urlencode({"config": json.dumps(CONFIG)})
        assert isinstance(handshake.complete(query, session_binding=binding), Connected)


def test_a_connect_state_cannot_finish_an_install(handshake: Handshake, binding: str) -> None:
    state = _path_state(_connect_callback(handshake.connect_url(CALLBACK_URL, owner_id="u", session_binding=binding)))
    with pytest.raises(CallbackError, match="service_key"):
        handshake.complete(urlencode({"config": json.dumps(CONFIG)}), session_binding=binding, state=state)


def test_state_shared_across_processes_through_sql(tmp_path: Path, binding: str) -> None:
    url = f"sqlite:///{tmp_path / 'nonces.db'}"
    first = Handshake(secret=SECRET, vendor_key=VENDOR_KEY, nonce_store=SqlNonceStore(url))
    second = Handshake(secret=SECRET, vendor_key=VENDOR_KEY, nonce_store=SqlNonceStore(url))
    state = _path_state(_connect_callback(first.connect_url(CALLBACK_URL, owner_id="u", session_binding=binding)))
    second.complete(urlencode(CONNECT_PARAMS), session_binding=binding, state=state)
    with pytest.raises(StateReplayed):
        first.complete(urlencode(CONNECT_PARAMS), session_binding=binding, state=state)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda h, b: h.connect_url("http://evil.example/cb", owner_id="o", session_binding=b), UnsafeURLError),
        (lambda h, b: h.install_url("https://v.example/cb#x", owner_id="o", session_binding=b), UnsafeURLError),
        (lambda h, b: Handshake(secret=SECRET).connect_url(CALLBACK_URL, owner_id="o", session_binding=b), ValueError),
        (lambda h, b: Handshake(secret=SECRET).install_url(REDIRECT_URL, owner_id="o", session_binding=b), ValueError),
        (lambda h, b: h.connect_url(CALLBACK_URL, owner_id="o", session_binding="weak"), ValueError),
        (
            lambda h, b: h.install_url(REDIRECT_URL, owner_id="o", session_binding=b, subdomain="evil.com/"),
            UnsafeURLError,
        ),
        (lambda h, b: h.install_url(REDIRECT_URL, owner_id="o", session_binding=b, subdomain="Acme"), UnsafeURLError),
    ],
)
def test_misuse_is_refused_before_any_redirect(handshake: Handshake, binding: str, call, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error):
        call(handshake, binding)


def test_repr_hides_secrets(handshake: Handshake) -> None:
    assert SECRET not in repr(handshake)
    assert VENDOR_KEY not in repr(handshake)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
@given(query=st.text(max_size=300), state=st.one_of(st.none(), st.text(max_size=100)))
def test_arbitrary_callbacks_only_raise_our_errors(
    handshake: Handshake, binding: str, query: str, state: str | None
) -> None:
    with contextlib.suppress(PdConnectError):
        handshake.complete(query, session_binding=binding, state=state)


_names = st.sampled_from(["account", "service_key", "service_name", "error", "config", "state", "extra"])
_values = st.one_of(st.text(max_size=60), st.just(SERVICE_KEY), st.just(json.dumps(CONFIG)), st.just("cancelled"))


@settings(max_examples=150)
@given(flow=st.sampled_from(["connect", "install"]), pairs=st.lists(st.tuples(_names, _values), max_size=6))
def test_valid_state_with_arbitrary_parameters_gives_an_outcome_or_our_error(
    flow: str, pairs: list[tuple[str, str]]
) -> None:
    handshake = Handshake(secret=SECRET, vendor_key=VENDOR_KEY, app_id=APP_ID)
    binding = new_session_binding()
    if flow == "connect":
        state = _path_state(
            _connect_callback(handshake.connect_url(CALLBACK_URL, owner_id="o", session_binding=binding))
        )
    else:
        state = _query_state(
            _install_redirect(handshake.install_url(REDIRECT_URL, owner_id="o", session_binding=binding))
        )
    try:
        outcome = handshake.complete(urlencode(pairs), session_binding=binding, state=state)
    except PdConnectError:
        return
    assert isinstance(outcome, Connected | Cancelled)


@pytest.mark.parametrize("store_kind", ["memory", "sql"])
def test_a_shared_empty_nonce_store_is_kept_so_a_callback_cannot_be_replayed(
    store_kind: str, clock: FakeClock, binding: str, tmp_path: Path
) -> None:
    """One module-level store, a Handshake made per request: the store is empty (falsy) at first."""
    from pdconnect import MemoryNonceStore

    shared = MemoryNonceStore(clock=clock) if store_kind == "memory" else SqlNonceStore(f"sqlite:///{tmp_path}/n.db")

    def per_request() -> Handshake:
        return Handshake(secret=SECRET, vendor_key=VENDOR_KEY, nonce_store=shared, clock=clock)

    url = per_request().connect_url(CALLBACK_URL, owner_id="org-1", session_binding=binding)
    callback = _connect_callback(url) + "?" + urlencode(CONNECT_PARAMS)
    path, _, query = callback.partition("?")
    state = path.rsplit("/", 1)[-1]
    assert isinstance(per_request().complete(query, state=state, session_binding=binding), Connected)
    assert per_request().states.nonce_store is shared
    with pytest.raises(StateReplayed):
        per_request().complete(query, state=state, session_binding=binding)


# -- hostile values through complete() (issue 9): always a PdConnectError ------------------------

_ANY_TEXT = st.text(alphabet=st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)))


@pytest.mark.parametrize(
    "query",
    [
        b"\xff\xfe",
        b"state=%ff",
        "state=\ud800",
        {"state": "\ud800"},
        {"state": ["\ud800"]},
        {"state": b"abc"},
        {"state": 5},
        {"state": None},
        {"state": ["a", "b"]},
        {5: "x"},
        {"state": "x" * 5000},
        "state=" + "x" * 5000,
        "&" * 200,
        ["state", "x"],
        None,
        42,
    ],
)
def test_a_hostile_query_is_a_typed_error(handshake: Handshake, binding: str, query: object) -> None:
    with pytest.raises(PdConnectError):
        handshake.complete(query, session_binding=binding)  # type: ignore[arg-type]


@pytest.mark.parametrize("owner", ["\ud800", "org-2", "", 7, ["org-1"]])
def test_a_hostile_current_owner_is_an_owner_mismatch_and_not_burned(
    handshake: Handshake, binding: str, owner: object
) -> None:
    state = _query_state(
        _install_redirect(handshake.install_url(REDIRECT_URL, owner_id="org-1", session_binding=binding))
    )
    query = urlencode({"state": state, "config": json.dumps(CONFIG)})
    with pytest.raises(StateOwnerMismatch):
        handshake.complete(query, session_binding=binding, owner_id=owner)  # type: ignore[arg-type]
    assert isinstance(handshake.complete(query, session_binding=binding, owner_id="org-1"), Connected)


@settings(max_examples=100)
@given(
    values=st.dictionaries(
        st.sampled_from(["state", "config", "service_key", "account", "service_name", "error"]),
        st.one_of(_ANY_TEXT, st.lists(_ANY_TEXT, max_size=3), st.integers(), st.none(), st.binary(max_size=10)),
        max_size=6,
    ),
    state=st.one_of(st.none(), _ANY_TEXT),
    owner=st.one_of(st.none(), _ANY_TEXT),
)
def test_any_mapping_with_any_values_only_raises_our_errors(
    values: dict[str, object], state: str | None, owner: str | None
) -> None:
    handshake = Handshake(secret=SECRET, vendor_key=VENDOR_KEY, app_id=APP_ID)
    with contextlib.suppress(PdConnectError):
        handshake.complete(values, session_binding="b" * 20, state=state, owner_id=owner)  # type: ignore[arg-type]
