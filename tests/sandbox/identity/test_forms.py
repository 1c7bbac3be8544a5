"""The token endpoint's form reader: hostile bodies are ``invalid_request``, never a 500."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.sandbox.identity.errors import OAuthError
from pdconnect.sandbox.identity.forms import MAX_FIELDS, MAX_FORM_BYTES, parse_pairs
from tests.sandbox.identity.harness import Harness

FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        (b"grant_type=refresh_token", "application/json", "must be application/x-www-form-urlencoded"),
        (b"grant_type=refresh_token", "text/plain", "must be application/x-www-form-urlencoded"),
        (b"grant_type=refresh_token", "multipart/form-data; boundary=x", "must be application/x-www-form-urlencoded"),
        (b'{"grant_type": "refresh_token"}', "application/json", "must be application/x-www-form-urlencoded"),
        (b"grant_type=refresh_token", f"{FORM}; charset=latin-1", "must be UTF-8"),
        (b"grant_type=refresh\xff_token", FORM, "not URL-encoded ASCII"),
        (b"grant_type=%ff%fe", FORM, "not a well-formed"),
        (b"grant_type=%C3%28", FORM, "not a well-formed"),  # invalid UTF-8 sequence
        (b"grant_type=a%00b", FORM, "control character"),
        (b"grant_type=a%0D%0Ab", FORM, "control character"),
        (b"grant_type", FORM, "not a well-formed"),
        (b"grant_type=a&&b=c", FORM, "not a well-formed"),
        (b"grant_type=refresh_token&grant_type=authorization_code", FORM, "more than once"),
        (b"client_id=a&client_id=a", FORM, "more than once"),
        (b"client_id=&client_id=a", FORM, "more than once"),
        ("&".join(f"f{i}=1" for i in range(MAX_FIELDS + 1)).encode(), FORM, "not a well-formed"),
        (b"x=" + b"a" * MAX_FORM_BYTES, FORM, "larger than"),
    ],
)
def test_hostile_bodies_are_invalid_request(harness: Harness, body: bytes, content_type: str, says: str) -> None:
    answer = harness.client().post("/oauth/token", data=body, headers={"Content-Type": content_type})
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "invalid_request"
    assert says in answer.get_json()["error_description"]
    assert set(answer.get_json()) == {"error", "error_description"}


def test_a_body_larger_than_it_says_is_still_cut_off(harness: Harness) -> None:
    environ_body = b"x=" + b"a" * (MAX_FORM_BYTES + 10)
    answer = harness.client().post(
        "/oauth/token", data=environ_body, headers={"Content-Type": FORM, "Content-Length": str(len(environ_body))}
    )
    assert answer.status_code == 400 and "larger than" in answer.get_json()["error_description"]


def test_a_huge_declared_length_is_refused_before_reading(harness: Harness) -> None:
    answer = harness.client().post(
        "/oauth/token",
        data=b"grant_type=x",
        headers={"Content-Type": FORM},
        environ_overrides={"CONTENT_LENGTH": str(10**9)},
    )
    assert answer.status_code == 400 and "larger than" in answer.get_json()["error_description"]


def test_get_on_the_token_endpoint_is_405_json(harness: Harness) -> None:
    answer = harness.client().get("/oauth/token?grant_type=client_credentials")
    assert answer.status_code == 405 and answer.get_json()["error"] == "invalid_request"
    assert answer.headers["Allow"] == "POST"


def test_blank_values_count_as_omitted() -> None:
    assert parse_pairs("a=&b=1") == {"b": "1"}


names = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\x7f"), min_size=1)
values = st.text(alphabet=st.characters(min_codepoint=0x20, exclude_categories=("Cs",), exclude_characters="\x7f"))


@given(st.dictionaries(names, values, max_size=10))
def test_any_urlencoded_form_reads_back_as_sent(form: dict[str, str]) -> None:
    assert parse_pairs(urlencode(form)) == {k: v for k, v in form.items() if v}


@given(st.text(max_size=300))
def test_any_text_is_fields_or_invalid_request(text: str) -> None:
    try:
        fields = parse_pairs(text)
    except OAuthError as exc:
        error = (exc.error, exc.status)
    else:
        assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in fields.items())
        return
    assert error == ("invalid_request", 400)


@given(st.binary(max_size=400), st.sampled_from([FORM, f"{FORM}; charset=utf-8", "text/plain", ""]))
def test_any_body_gets_an_rfc6749_answer(body: bytes, content_type: str) -> None:
    harness = _SHARED
    answer = harness.client().post("/oauth/token", data=body, headers={"Content-Type": content_type})
    assert answer.status_code in (400, 401)
    data = answer.get_json()
    assert set(data) == {"error", "error_description"}
    assert data["error"] in ("invalid_request", "invalid_client", "unsupported_grant_type", "invalid_grant")


_SHARED = Harness()
