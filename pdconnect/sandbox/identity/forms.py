"""Reading a form-encoded OAuth request body strictly (RFC 6749 sections 3.1, 3.2 and 4.1.3).

The token endpoint takes ``application/x-www-form-urlencoded`` only. A parameter given twice
is refused ("MUST NOT be included more than once"), one sent without a value counts as
omitted, and anything that is not URL-encoded UTF-8, holds a control character, is larger
than :data:`MAX_FORM_BYTES` or has more than :data:`MAX_FIELDS` fields is refused before any
field is looked at. Every refusal is an :class:`~pdconnect.sandbox.identity.errors.OAuthError`
``invalid_request``, never a 500.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request

from pdconnect.sandbox.identity.errors import OAuthError

#: UNCONFIRMED: PagerDuty documents no limit; a token request is a few hundred bytes.
MAX_FORM_BYTES = 16 * 1024
MAX_FIELDS = 64
FORM_TYPE = "application/x-www-form-urlencoded"


def parse_fields(text: str, *, controls: bool = False) -> list[tuple[str, str]]:
    """Every field of a URL-encoded ``text``, in order, blank values and repeats included.

    Raises :class:`OAuthError` (``invalid_request``) for a malformed field, an escape that is
    not UTF-8, more than :data:`MAX_FIELDS` fields or, unless ``controls``, a control character
    (the authorize page judges those field by field, so a known client hears about them).
    """
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except ValueError as exc:  # UnicodeDecodeError is one
        raise OAuthError("invalid_request", "The body is not a well-formed URL-encoded form.") from exc
    for name, value in pairs if not controls else ():
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name + value):
            raise OAuthError("invalid_request", "The form holds a control character.")
    return pairs


def parse_pairs(text: str, *, controls: bool = False) -> dict[str, str]:
    """The fields of ``text`` (see :func:`parse_fields`), each at most once; blank ones dropped."""
    fields: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in parse_fields(text, controls=controls):
        if name in seen:
            raise OAuthError("invalid_request", f"The parameter {name[:40]!r} is given more than once.")
        seen.add(name)
        if value:
            fields[name] = value
    return fields


def read_form(request: Request, *, controls: bool = False) -> dict[str, str]:
    """The form a POST sent, read by :func:`parse_pairs` after its content type and size are checked."""
    if request.mimetype != FORM_TYPE:
        raise OAuthError("invalid_request", f"The body must be {FORM_TYPE}.")
    charset = request.mimetype_params.get("charset")
    if charset is not None and charset.lower() != "utf-8":
        raise OAuthError("invalid_request", "The form must be UTF-8.")
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise OAuthError("invalid_request", f"The body is larger than {MAX_FORM_BYTES} bytes.")
    try:
        raw = request.stream.read(MAX_FORM_BYTES + 1)
    except HTTPException as exc:  # the WSGI layer's own size limit or a disconnect
        raise OAuthError("invalid_request", "The body could not be read.") from exc
    if len(raw) > MAX_FORM_BYTES:
        raise OAuthError("invalid_request", f"The body is larger than {MAX_FORM_BYTES} bytes.")
    try:
        text = raw.decode("ascii")  # a URL-encoded form is ASCII; anything else is escaped
    except UnicodeDecodeError as exc:
        raise OAuthError("invalid_request", "The body is not URL-encoded ASCII.") from exc
    return parse_pairs(text, controls=controls)
