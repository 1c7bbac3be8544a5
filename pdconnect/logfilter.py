"""A logging filter that keeps integration keys and handshake tokens out of access logs.

PagerDuty's protocols put secrets in the callback's URL: ``service_key`` (Connect), ``config``
with every integration key (the install flow), and the handshake ``state`` in the query or
as the last path segment. A web server's access log writes that URL down. Add the filter to
the server's access logger::

    import logging
    from pdconnect.logfilter import RedactSecrets

    logging.getLogger("werkzeug").addFilter(RedactSecrets())  # Flask's development server
    logging.getLogger("gunicorn.access").addFilter(RedactSecrets())  # gunicorn

It rewrites the record's message and arguments (a tuple, as Werkzeug logs, or a mapping, as
gunicorn logs), replacing those values with ``[redacted]``, and any other 32-character run of
letters and digits too (an integration key, wherever it appears). It never drops a record.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, MutableMapping
from typing import Any

REDACTED = "[redacted]"
#: Query parameters whose values are secret in a callback (and in OAuth, ``code`` and tokens).
SECRET_PARAMETERS = (
    "service_key",
    "integration_key",
    "routing_key",
    "config",
    "state",
    "code",
    "token",
    "access_token",
    "refresh_token",
)
# A value runs to the next parameter, a fragment, the end of the line, or the request line's
# " HTTP/1.1": a decoded install ``config`` holds spaces and quotes.
_VALUE = r"(?:(?!\sHTTP/\d)[^&#\r\n])*"
# An integration key: 32 letters and digits, not part of a longer run. It may follow an
# escape ("%3D", "%253D" and deeper, JSON's "\u0022", "\x22") whose last characters are hex
# digits: that escape is matched and kept, or the key would look like part of a longer run.
_KEY = re.compile(
    r"((?<![A-Za-z0-9])|%(?:25)*[0-9A-Fa-f]{2}|\\u[0-9A-Fa-f]{4}|\\x[0-9A-Fa-f]{2})[A-Za-z0-9]{32}(?![A-Za-z0-9])",
    re.ASCII,
)
# What separates a parameter from the one before, plain, percent-encoded once or twice
# (a login page's ``next=`` holds the callback URL encoded), at any depth, or JSON-escaped.
_SEPARATOR = r"(?:^|[?&;,{\s\"'\\]|%(?:25)*(?:3F|26|3B|2C|7B|20|22|27|5C))"
# "=" in the same forms.
_EQUALS = r"(?:=|%(?:25)*3D)"
# A quote, perhaps escaped (JSON inside JSON), as JSON or a Python repr writes a name and value.
_QUOTE = r"""\\?["']"""


def _parameters(names: Iterable[str]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """``name=value`` in a query, and ``"name": "value"`` in JSON or a repr; group 1 is kept."""
    alternatives = "|".join(re.escape(name) for name in names)
    assigned = re.compile(rf"(?i)({_SEPARATOR}(?:{alternatives}){_EQUALS})" + _VALUE)
    quoted = re.compile(rf"(?i)({_QUOTE}(?:{alternatives}){_QUOTE}\s*:\s*{_QUOTE})[^\"'\\\r\n]*")
    return assigned, quoted


def _path_pattern(path: str) -> str:
    """``path`` as a pattern whose slashes may also be percent-encoded, at any depth."""
    return r"(?:/|%(?:25)*2F)".join(re.escape(part) for part in path.split("/"))


class RedactSecrets(logging.Filter):
    """Redacts callback secrets from log records; attach it to an access logger or handler.

    ``parameters`` names the query parameters to redact (by default
    :data:`SECRET_PARAMETERS`); ``callback_paths`` the path prefixes whose next segment is a
    state (by default any path segment after ``/callback/``, as pdconnect's routes use).
    ``any_key=False`` keeps other 32-character runs (say, request ids that are UUIDs in hex).
    """

    def __init__(
        self,
        *,
        parameters: Iterable[str] = SECRET_PARAMETERS,
        callback_paths: Iterable[str] = ("/callback/",),
        any_key: bool = True,
    ) -> None:
        super().__init__()
        self._any_key = any_key
        self._parameters = _parameters(parameters)
        prefixes = "|".join(_path_pattern(path) for path in callback_paths)
        self._paths = re.compile(rf"(?i)({prefixes})[A-Za-z0-9_.\-]+") if prefixes else None

    def redact(self, text: str) -> str:
        """``text`` with every secret value replaced by ``[redacted]``."""
        for pattern in self._parameters:
            text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
        if self._paths is not None:
            text = self._paths.sub(lambda match: match.group(1) + REDACTED, text)
        return _KEY.sub(lambda match: match.group(1) + REDACTED, text) if self._any_key else text

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self.redact(record.msg)
        args: Any = record.args
        if isinstance(args, tuple):
            record.args = tuple(self.redact(arg) if isinstance(arg, str) else arg for arg in args)
        elif isinstance(args, MutableMapping):
            for name, value in list(args.items()):
                if isinstance(value, str):
                    args[name] = self.redact(value)
        return True
