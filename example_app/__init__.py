"""Acme Monitoring: a small monitoring product built on pdconnect's public API only.

Users sign in with a name, connect their PagerDuty account (OAuth then the install flow,
legacy Connect or a pasted key), and create monitors (an HTTP check or a metric threshold). A
failing monitor opens an incident on the PagerDuty services it is connected to, with the
details a responder needs; recovery resolves it. ``python3 dev.py demo`` runs it beside the PagerDuty sandbox.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, render_template, request
from flask.globals import request_ctx
from flask.typing import ResponseReturnValue
from markupsafe import Markup

from example_app import accounts, alertmanager, db
from example_app.config import load_config, read_settings
from example_app.monitoring import Monitoring
from example_app.views import RowIdConverter, bp, current_owner
from pdconnect import SqlNonceStore
from pdconnect.database import create_engine
from pdconnect.errors import PdConnectError
from pdconnect.flask import (
    CSRF_FIELD,
    PagerDutyConnect,
    broken_announcer,
    check_form_token,
    csrf_token,
    external_url,
    integration_broken,
)
from pdconnect.storage import SqlIntegrationStore, StoredIntegration
from pdconnect.worker import Worker

logger = logging.getLogger("example_app")


def error_page(title: str, message: str, status: int) -> ResponseReturnValue:
    """Acme's error page, or a plain one without links when the request has no URL adapter.

    A Host header that is not a host name (``a..b``, a label over 63 characters) makes
    Werkzeug refuse it before routing (``BadHost``, a 400): no URL can be built for such a
    request, and the layout's ``url_for`` would turn the 400 into a 500.
    """
    if request_ctx.url_adapter is None:
        body = Markup(
            "<!doctype html><html lang=en><meta charset=utf-8><title>{0}</title><h1>{0}</h1><p>{1}</p></html>"
        ).format(title, message)
        return str(body), status, {"Content-Type": "text/html; charset=utf-8"}
    return render_template("error.html", title=title, message=message), status


def create_app(
    overrides: dict[str, Any] | None = None,
    *,
    environ: dict[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> Flask:
    """Build the app from the environment (see :mod:`example_app.config`) and ``overrides``.

    ``clock`` reaches pdconnect's handshake state (tests use it to expire a handshake).
    """
    app = Flask(__name__)
    app.config.update(load_config(environ))
    app.config.update(overrides if overrides is not None else {})
    read_settings(app.config)
    os.makedirs(app.instance_path, exist_ok=True)
    url = app.config["ACME_DATABASE_URL"] or f"sqlite:///{app.instance_path}/acme.db"
    engine = create_engine(url)  # pdconnect's: parameters (user names, keys) never reach a log or an error
    db.metadata.create_all(engine)
    app.extensions["acme_engine"] = engine

    PagerDutyConnect(
        app,
        store=SqlIntegrationStore(engine),
        nonce_store=SqlNonceStore(engine),
        owner_loader=current_owner,
        clock=clock,
    )
    app.config["PDCONNECT_REDIRECT_TO"] = "acme.pagerduty_settings"
    app.url_map.converters["id"] = RowIdConverter
    app.register_blueprint(bp)
    alertmanager.install(app, engine)
    accounts.install(app)

    @app.template_global()
    def csrf() -> Markup:
        return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, csrf_token())

    # Absolute URLs on pages (the Alertmanager receiver's) come from PDCONNECT_CALLBACK_URL or an
    # allowed host, never from the Host header: a forged one would put its URL in a config.
    app.add_template_global(external_url, "external_url")

    @app.template_filter("timestamp")
    def timestamp(value: float) -> str:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    @app.before_request
    def refuse_undecodable_queries() -> ResponseReturnValue | None:
        # Werkzeug decodes the query string as strict UTF-8 on first use of request.args: raw
        # bytes like %FF sent unescaped would be a UnicodeDecodeError (a 500) in any view.
        try:
            request.query_string.decode("utf-8")
        except UnicodeDecodeError:
            return error_page("Bad address", "The address is not valid.", 400)
        return None

    @app.before_request
    def protect_forms() -> ResponseReturnValue | None:
        # pdconnect checks its own routes; Acme's forms use the same session-bound token.
        if request.method == "POST" and request.blueprint == "acme":
            try:
                check_form_token()
            except PdConnectError:
                return error_page("Please try again", "The form expired.", 400)
        return None

    @app.errorhandler(404)
    def not_found(error: Exception) -> ResponseReturnValue:
        return error_page("Not found", "There is nothing here.", 404)

    @app.errorhandler(400)
    def bad_request(error: Exception) -> ResponseReturnValue:
        return error_page("Bad request", "The request was not valid.", 400)

    @app.errorhandler(405)
    def wrong_method(error: Exception) -> ResponseReturnValue:
        return error_page("Not allowed", "This address does not take that kind of request.", 405)

    monitoring = Monitoring(app, engine)
    app.extensions["acme_monitoring"] = monitoring
    if app.config["ACME_SCHEDULER"]:
        monitoring.start()
    pagerduty = app.extensions["pdconnect"]
    # The store marks an integration broken when PagerDuty forgets its key; the announcer sends
    # pdconnect's integration_broken signal, and the pages ask its owner to reconnect.
    worker = Worker(
        pagerduty.outbox,
        integrations=pagerduty.store,
        on_integration_broken=broken_announcer(app),
        poll_interval=1.0,
    )

    @integration_broken.connect_via(app)
    def tell_the_owner(sender: Flask, *, integration: StoredIntegration, owner_id: str) -> None:
        # A real product would email the owner here; the settings page and dashboard say it too.
        logger.warning(
            "PagerDuty no longer knows the key of %r (owner %s): they are asked to reconnect",
            integration.service_name,
            owner_id,
        )

    app.extensions["acme_worker"] = worker
    if app.config["ACME_WORKER"]:
        # In the demo the worker runs beside the app; in production run `pdconnect worker` instead.
        threading.Thread(target=worker.run, name="acme-outbox-worker", daemon=True).start()
    return app
