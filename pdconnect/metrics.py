"""Prometheus metrics text for the outbox and a worker (text exposition format 0.0.4).

Queue gauges are read from the database, so every process reports the same queue; counters
are this process's own (Prometheus sums them across instances). Serve the text from any
endpoint, for example in Flask::

    @app.route("/metrics")
    def metrics():
        return metrics_text(outbox, worker), {"Content-Type": CONTENT_TYPE}
"""

from __future__ import annotations

from pdconnect.outbox import Outbox, OutboxStats
from pdconnect.worker import Worker

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_text(outbox: Outbox, worker: Worker | None = None, *, stats: OutboxStats | None = None) -> str:
    """The metrics of ``outbox`` (and of ``worker``, when this process runs one)."""
    stats = stats or outbox.stats()
    lines = [
        "# HELP pdconnect_outbox_events Events in the outbox, by state.",
        "# TYPE pdconnect_outbox_events gauge",
    ]
    for state in ("pending", "leased", "delivered", "dead"):
        lines.append(f'pdconnect_outbox_events{{state="{state}"}} {getattr(stats, state)}')
    lines += [
        "# HELP pdconnect_outbox_depth Events not yet delivered or dead.",
        "# TYPE pdconnect_outbox_depth gauge",
        f"pdconnect_outbox_depth {stats.depth}",
        "# HELP pdconnect_outbox_due_events Pending events whose time has come.",
        "# TYPE pdconnect_outbox_due_events gauge",
        f"pdconnect_outbox_due_events {stats.due}",
        "# HELP pdconnect_outbox_oldest_due_age_seconds Age of the oldest due event, since it was enqueued.",
        "# TYPE pdconnect_outbox_oldest_due_age_seconds gauge",
        f"pdconnect_outbox_oldest_due_age_seconds {stats.oldest_due_age:.3f}",
        "# HELP pdconnect_outbox_paused_keys Routing keys paused after a 429.",
        "# TYPE pdconnect_outbox_paused_keys gauge",
        f"pdconnect_outbox_paused_keys {stats.paused_keys}",
        "# HELP pdconnect_outbox_enqueued_total Events enqueued by this process.",
        "# TYPE pdconnect_outbox_enqueued_total counter",
        f"pdconnect_outbox_enqueued_total {outbox.enqueued}",
    ]
    if worker is not None:
        counters = worker.counters
        for name, value, text in (
            ("delivered", counters.delivered, "Events this worker delivered."),
            ("retried", counters.retried, "Attempts that failed and were scheduled again."),
            ("dead", counters.dead, "Events this worker sent to the dead-letter state."),
            ("given_back", counters.given_back, "Events given back untried (rate limit, shutdown)."),
            ("attempts", counters.attempts, "Requests made."),
            ("database_errors", counters.database_errors, "Times the outbox's database was unavailable."),
        ):
            lines += [
                f"# HELP pdconnect_worker_{name}_total {text}",
                f"# TYPE pdconnect_worker_{name}_total counter",
                f"pdconnect_worker_{name}_total {value}",
            ]
    return "\n".join(lines) + "\n"
