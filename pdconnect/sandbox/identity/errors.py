"""The errors the identity server answers with, in RFC 6749's shape.

One exception for the token endpoint (:class:`OAuthError`, a 400 or 401 with
``{"error": ..., "error_description": ...}``, RFC 6749 section 5.2), one for the authorize
page when the browser must *not* be sent back (:class:`AuthorizePageError`, RFC 6749
4.1.2.1: an unknown client or an unregistered ``redirect_uri`` gets a page, never a
redirect), and one for the control API (:class:`ControlError`).
"""

from __future__ import annotations


class OAuthError(Exception):
    """A refused token request: ``error`` is one of RFC 6749 5.2's codes.

    ``status`` is 400, or 401 for ``invalid_client`` (the client failed to authenticate).
    The description never holds a secret, a token or a code: it names what was wrong.
    """

    def __init__(self, error: str, description: str, *, status: int | None = None) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status if status is not None else (401 if error == "invalid_client" else 400)


class AuthorizePageError(Exception):
    """An authorize request the sandbox answers with an error page (``status``), not a redirect."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ControlError(Exception):
    """A refused control-API request: a JSON ``{"error": {"message": ...}}`` with ``status``."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
