"""The blueprint every route of the extension is registered on (under ``/pagerduty`` by default)."""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("pdconnect", "pdconnect.flask", template_folder="templates")
