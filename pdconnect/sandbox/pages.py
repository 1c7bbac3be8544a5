"""The sandbox's HTML pages, rendered with markupsafe (every value escaped).

Pages look plain on purpose: they are for a developer clicking through a handshake or acting
as a responder, and for browser tests, which find elements by their labels and ``data-``
attributes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup

from pdconnect.sandbox.model import (
    Account,
    App,
    ChangeEvent,
    Delivery,
    EscalationPolicy,
    Incident,
    IntegrationKey,
    Received,
    Ruleset,
    Service,
    Subscription,
    User,
)
from pdconnect.sandbox.webhooks import V3_EVENT_TYPES
from pdconnect.urls import safe_link_href

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
header{background:#0b3d2e;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:center}
header a{color:#d7f5e4;text-decoration:none}header strong{font-size:18px}
main{max-width:1100px;margin:24px auto;padding:0 24px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;margin-bottom:20px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eaeef2;vertical-align:top}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}pre{background:#f6f8fa;padding:8px;overflow:auto;max-height:300px}
.status{display:inline-block;padding:2px 8px;border-radius:10px;font-size:12px;font-weight:600}
.status-triggered{background:#ffebe9;color:#a40e26}.status-acknowledged{background:#fff8c5;color:#7d4e00}
.status-resolved{background:#dafbe1;color:#116329}
button,input[type=submit]{font:inherit;padding:6px 12px;border-radius:6px;border:1px solid #8c959f;background:#f6f8fa;cursor:pointer}
button.primary{background:#1f883d;color:#fff;border-color:#1a7f37}button.danger{background:#fff;color:#cf222e}
form.inline{display:inline-block;margin:0 8px 8px 0}label{display:block;margin:8px 0 4px;font-weight:600}
input[type=text],input[type=url],select,textarea{font:inherit;padding:6px;border:1px solid #8c959f;border-radius:6px;min-width:280px}
.error{background:#ffebe9;border-color:#ff8182}.notice{background:#ddf4ff;border-color:#54aeff}.muted{color:#57606a}
.secret{font-size:16px;background:#fff8c5;padding:8px;display:inline-block}
"""


def page(title: str, body: Markup, *, status_line: str = "") -> str:
    """A whole page: header with navigation, then ``body``."""
    nav = Markup(
        '<header><strong>PagerDuty sandbox</strong><a href="/">Overview</a><a href="/incidents">Incidents</a>'
        '<a href="/webhooks">Webhooks</a><a href="/apps">Apps</a><a href="/received">Received events</a>'
        '<span class="muted">{status}</span></header>'
    ).format(status=status_line)
    return str(
        Markup(
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} · PagerDuty sandbox</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1"><style>{css}</style></head>'
            "<body>{nav}<main><h1>{title}</h1>{body}</main></body></html>"
        ).format(title=title, css=Markup(_CSS), nav=nav, body=body)  # noqa: S704 -- our constant
    )


def join(parts: Iterable[Markup | str]) -> Markup:
    return Markup("").join(parts)


def status_badge(status: str) -> Markup:
    return Markup('<span class="status status-{0}" data-status="{0}">{0}</span>').format(status)


def error_page(message: str) -> str:
    return page(
        "Something is wrong",
        Markup(
            '<section class="error"><p data-error>{}</p><p><a href="/">Back to the overview</a></p></section>'
        ).format(message),
    )


def hidden(fields: dict[str, str | None]) -> Markup:
    return join(
        Markup('<input type="hidden" name="{}" value="{}">').format(name, value)
        for name, value in fields.items()
        if value is not None
    )


def json_block(data: Any) -> Markup:
    return Markup("<pre>{}</pre>").format(json.dumps(data, indent=2, sort_keys=True, default=str))


# -- overview, accounts, services -----------------------------------------------------------


def overview(
    accounts: Sequence[Account],
    users: Sequence[User],
    policies: Sequence[EscalationPolicy],
    services: Sequence[Service],
    keys: Sequence[IntegrationKey],
    rulesets: Sequence[Ruleset],
    incidents: Sequence[Incident],
    base_url: str,
) -> str:
    rows = []
    for service in services:
        service_keys = [k for k in keys if k.service == service.id]
        rows.append(
            Markup('<tr><td>{account}</td><td><a href="/services/{id}">{name}</a></td><td>{keys}</td></tr>').format(
                account=service.account,
                id=service.id,
                name=service.name,
                keys=join(
                    Markup('<div><code data-key="{0}">{0}</code> <span class="muted">{1}</span></div>').format(
                        k.id, f"{k.kind} (disabled)" if k.disabled else k.kind
                    )
                    for k in service_keys
                ),
            )
        )
    ruleset_rows = join(
        Markup("<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>").format(r.account, r.name, r.key)
        for r in rulesets
    )
    open_incidents = [i for i in incidents if i.status != "resolved"]
    body = Markup(
        "<section><p>Events API: <code>{base}/v2/enqueue</code>, <code>{base}/v2/change/enqueue</code>, "
        "<code>{base}/generic/2010-04-15/create_event.json</code>. Connect: <code>{base}/connect</code>. "
        "Install flow: <code>{base}/install/integration</code>.</p>"
        "<p>{n_accounts} account(s), {n_open} open incident(s).</p></section>"
        "<section><h2>Accounts</h2><table><tr><th>Subdomain</th><th>Name</th><th>Responders</th>"
        "<th>Escalation policies</th></tr>{account_rows}</table></section>"
        "<section><h2>Services and integration keys</h2><table><tr><th>Account</th><th>Service</th>"
        "<th>Keys</th></tr>{rows}</table>"
        '<form method="post" action="/services"><label for="new-service">New service in account</label>'
        '<select name="account">{account_options}</select> <input type="text" id="new-service" name="name" '
        'placeholder="Service name"> <button type="submit">Create service</button></form></section>'
        "<section><h2>Rulesets</h2><table><tr><th>Account</th><th>Name</th><th>Routing key</th></tr>{rulesets}"
        "</table></section>"
    ).format(
        base=base_url,
        n_accounts=len(accounts),
        n_open=len(open_incidents),
        rows=join(rows),
        account_rows=join(
            Markup("<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>").format(
                a.id,
                a.name,
                ", ".join(u.name for u in users if u.account == a.id),
                ", ".join(p.name for p in policies if p.account == a.id),
            )
            for a in accounts
        ),
        rulesets=ruleset_rows,
        account_options=join(Markup('<option value="{0}">{0}</option>').format(a.id) for a in accounts),
    )
    return page("Overview", body)


def service_page(
    service: Service,
    keys: Sequence[IntegrationKey],
    incidents: Sequence[Incident],
    changes: Sequence[ChangeEvent],
) -> str:
    key_rows = join(
        Markup(
            '<tr data-key-row="{key}"><td><code>{key}</code></td><td>{kind}</td><td>{name}</td><td>{owner}</td>'
            "<td data-key-state>{state}</td><td>{toggle}{delete}</td></tr>"
        ).format(
            key=k.id,
            kind=k.kind,
            name=k.name,
            owner=k.vendor or k.app_id or "",
            state="disabled" if k.disabled else "enabled",
            toggle=_key_form(service.id, k.id, "enable" if k.disabled else "disable", ""),
            delete=_key_form(service.id, k.id, "delete", "danger"),
        )
        for k in keys
    )
    body = Markup(
        "<section><p>Account <strong>{account}</strong> · id <code>{id}</code></p>"
        "<h2>Integrations</h2><table><tr><th>Key</th><th>Type</th><th>Name</th><th>Vendor / app</th><th>State</th>"
        "<th></th></tr>{keys}"
        '</table><form method="post" action="/services/{id}/integrations"><button type="submit">'
        "Add an Events API v2 integration</button></form></section>"
        "<section><h2>Incidents</h2>{incidents}</section><section><h2>Change events</h2>{changes}</section>"
    ).format(
        account=service.account,
        id=service.id,
        keys=key_rows,
        incidents=incident_table(incidents, [service]),
        changes=join(
            Markup("<div><strong>{}</strong> <span class=muted>{}</span>{}</div>").format(
                c.summary, c.received_at, json_block(c.raw)
            )
            for c in changes
        )
        or Markup('<p class="muted">None yet.</p>'),
    )
    return page(service.name, body)


def _key_form(service_id: str, key_id: str, change: str, cls: str) -> Markup:
    """A button that disables, enables or deletes one integration key."""
    return Markup(
        '<form class="inline" method="post" action="/services/{service}/integrations/{key}/{change}">'
        '<button type="submit" class="{cls}" data-key-action="{change}">{label}</button></form>'
    ).format(service=service_id, key=key_id, change=change, cls=cls, label=change.capitalize())


# -- incidents ------------------------------------------------------------------------------


def incident_table(incidents: Sequence[Incident], services: Sequence[Service]) -> Markup:
    if not incidents:
        return Markup('<p class="muted">No incidents.</p>')
    names = {s.id: s.name for s in services}
    rows = join(
        Markup(
            '<tr data-incident="{id}"><td>#{number}</td><td><a href="/incidents/{id}">{title}</a></td><td>{status}</td>'
            '<td data-service="{service_id}">{service}</td><td>{urgency}</td><td><code>{key}</code></td>'
            "<td>{created}</td></tr>"
        ).format(
            id=i.id,
            number=i.number,
            title=i.title,
            status=status_badge(i.status),
            service_id=i.service,
            service=Markup('<a href="/services/{}">{}</a>').format(i.service, names[i.service])
            if i.service in names
            else Markup('<span class="muted">{} (deleted)</span>').format(i.service),
            urgency=i.urgency,
            key=i.incident_key,
            created=i.created_at,
        )
        for i in incidents
    )
    return Markup(
        "<table><tr><th>#</th><th>Title</th><th>Status</th><th>Service</th><th>Urgency</th><th>Dedup key</th>"
        "<th>Opened</th></tr>{}"
        "</table>"
    ).format(rows)


def incidents_page(incidents: Sequence[Incident], services: Sequence[Service]) -> str:
    return page("Incidents", Markup("<section>{}</section>").format(incident_table(incidents, services)))


def incident_page(
    incident: Incident,
    service: Service | None,
    users: Sequence[User],
    policies: Sequence[EscalationPolicy],
    alerts: Sequence[Any],
    notice: str | None = None,
) -> str:
    names = {u.id: u.name for u in users}
    client_links = [
        _client_link(alert.client_url, alert.client, marked=True)
        for alert in alerts
        if alert is not None and alert.client_url
    ]
    timeline = join(
        Markup("<tr><td>{at}</td><td>{kind}</td><td>{summary}{channel}</td></tr>").format(
            at=entry["at"],
            kind=entry["type"],
            summary=entry["summary"],
            channel=_channel(entry.get("channel")),
        )
        for entry in incident.timeline
    )
    actions = Markup("")
    if incident.status != "resolved":
        actions = _action_forms(incident, users, policies)
    body = Markup(
        "{notice}<section><p>{status} · #{number} · urgency {urgency} · priority {priority} · service {service}</p>"
        "<p>Dedup key <code data-incident-key>{key}</code> · assigned to {assignees} · escalation level {level}</p>"
        "<p>{links}</p>{actions}</section><section><h2>Timeline</h2><table>{timeline}</table></section>"
    ).format(
        notice=Markup('<section class="notice">{}</section>').format(notice) if notice else "",
        status=status_badge(incident.status),
        number=incident.number,
        urgency=incident.urgency,
        priority=incident.priority or "none",
        service=service.name if service else incident.service,
        key=incident.incident_key,
        assignees=", ".join(names.get(u, u) for u in incident.assignees),
        level=incident.escalation_level,
        links=join(client_links),
        actions=actions,
        timeline=timeline,
    )
    return page(incident.title or incident.id, body)


def _client_link(url: object, client: object, *, marked: bool = False) -> Markup:
    """The "View in ..." link for an http(s) ``client_url``; anything else as plain text.

    A ``client_url`` comes from whoever sent the event: ``javascript:``, ``data:`` and the
    like must never become clickable (:func:`pdconnect.urls.safe_link_href`).
    """
    label = client if isinstance(client, str) and client else "source"
    attributes = Markup(" data-client-link") if marked else Markup("")
    href = safe_link_href(url)
    if href is None:
        return Markup(
            "<span{attributes} data-unsafe-link>View in {label}: <code>{url}</code> (not a web link)</span>"
        ).format(attributes=attributes, label=label, url=str(url)[:300])
    return Markup('<a{attributes} href="{href}" rel="noopener noreferrer">View in {label}</a>').format(
        attributes=attributes, href=href, label=label
    )


def _channel(channel: dict[str, Any] | None) -> Markup:
    if not channel:
        return Markup("")
    extra = Markup("")
    if channel.get("client_url"):
        extra = Markup(" · {}").format(_client_link(channel["client_url"], channel.get("client")))
    return Markup("<details><summary>{kind}{extra}</summary>{raw}</details>").format(
        kind=channel.get("type", ""), extra=extra, raw=json_block(channel.get("raw"))
    )


def _action_forms(incident: Incident, users: Sequence[User], policies: Sequence[EscalationPolicy]) -> Markup:
    base = f"/incidents/{incident.id}/actions"
    simple = []
    if incident.status == "triggered":
        simple.append(("acknowledge", "Acknowledge", "primary"))
    if incident.status == "acknowledged":
        simple.append(("unacknowledge", "Unacknowledge", ""))
    simple += [("resolve", "Resolve", "primary"), ("escalate", "Escalate", "")]
    buttons = join(
        Markup(
            '<form class="inline" method="post" action="{base}"><input type="hidden" name="action" value="{a}">'
            '<button type="submit" class="{cls}">{label}</button></form>'
        ).format(base=base, a=action, label=label, cls=cls)
        for action, label, cls in simple
    )
    user_options = join(Markup('<option value="{}">{}</option>').format(u.id, u.name) for u in users)
    policy_options = join(Markup('<option value="{}">{}</option>').format(p.id, p.name) for p in policies)
    priority_options = join(
        Markup('<option value="{0}">{0}</option>').format(p) for p in ("P1", "P2", "P3", "P4", "P5")
    )
    return Markup(
        "<div>{buttons}</div>"
        '<form class="inline" method="post" action="{base}"><input type="hidden" name="action" value="reassign">'
        '<select name="assignee" aria-label="Reassign to">{users}</select> <button type="submit">Reassign</button></form>'
        '<form class="inline" method="post" action="{base}"><input type="hidden" name="action" value="delegate">'
        '<select name="escalation_policy" aria-label="Delegate to">{policies}</select> '
        '<button type="submit">Delegate</button></form>'
        '<form class="inline" method="post" action="{base}"><input type="hidden" name="action" value="priority">'
        '<select name="priority" aria-label="Priority">{priorities}</select> <button type="submit">Set priority</button>'
        "</form>"
        '<form method="post" action="{base}"><input type="hidden" name="action" value="annotate">'
        '<label for="note">Add a note</label><textarea id="note" name="note" rows="2"></textarea> '
        '<button type="submit">Add note</button></form>'
    ).format(buttons=buttons, base=base, users=user_options, policies=policy_options, priorities=priority_options)


# -- webhooks, apps, received ---------------------------------------------------------------


def webhooks_page(
    subscriptions: Sequence[Subscription],
    deliveries: Sequence[Delivery],
    services: Sequence[Service],
    created: Subscription | None = None,
    accounts: Sequence[str] = (),
) -> str:
    notice = Markup("")
    if created is not None:
        notice = Markup(
            '<section class="notice"><p>Subscription <code>{id}</code> created. Its signing secret is shown '
            'only once:</p><p><code class="secret" data-secret>{secret}</code></p></section>'
        ).format(id=created.id, secret=created.secret)
    rows = join(
        Markup(
            "<tr><td><code>{id}</code></td><td>{account}</td><td>{url}</td><td>{version}</td><td>{filter}</td>"
            "<td>{state}</td>"
            '<td><form method="post" action="/webhooks/{id}/delete"><button class="danger" type="submit">Delete'
            "</button></form></td></tr>"
        ).format(
            id=s.id,
            account=s.account,
            url=s.url,
            version=s.version.upper(),
            filter=f"{s.filter_type} {s.filter_id or ''}",
            state="active" if s.disabled_until is None else "temporarily disabled",
        )
        for s in subscriptions
    )
    delivery_rows = join(
        Markup(
            "<tr><td><code>{id}</code></td><td>{type}</td><td>{incident}</td><td>{state}</td><td>{attempts}</td></tr>"
        ).format(
            id=d.id,
            type=d.event_type,
            incident=d.incident,
            state=d.state,
            attempts="; ".join(f"{a['status'] or a['error']}" for a in d.attempts),
        )
        for d in deliveries[-200:]
    )
    event_boxes = join(
        Markup(
            '<label class="muted" style="font-weight:400"><input type="checkbox" name="events" value="{0}" checked> {0}</label>'
        ).format(e)
        for e in V3_EVENT_TYPES
    )
    account_options = join(
        Markup('<option value="account:{0}">Whole account {0}</option>').format(a) for a in accounts
    ) or Markup('<option value="account">Whole account</option>')
    service_options = account_options + join(
        Markup('<option value="{}">{} (service of {})</option>').format(s.id, s.name, s.account) for s in services
    )
    body = Markup(
        "{notice}<section><h2>Subscriptions</h2><table><tr><th>Id</th><th>Account</th><th>URL</th><th>Version</th><th>Filter</th>"
        "<th>State</th><th></th></tr>{rows}</table></section>"
        '<section><h2>New subscription</h2><form method="post" action="/webhooks">'
        '<label for="url">Delivery URL (this machine only)</label><input type="url" id="url" name="url" required>'
        '<label for="scope">Scope</label><select id="scope" name="scope">'
        "{services}</select>"
        '<label for="version">Format</label><select id="version" name="version"><option value="v3">V3 (signed)</option>'
        '<option value="v2">V2 messages (legacy)</option></select><label>Events</label>{events}'
        '<p><button class="primary" type="submit">Create subscription</button></p></form></section>'
        "<section><h2>Recent deliveries</h2><table><tr><th>X-Webhook-Id</th><th>Event</th><th>Incident</th>"
        "<th>State</th><th>Attempts</th></tr>{deliveries}</table></section>"
    ).format(notice=notice, rows=rows, services=service_options, events=event_boxes, deliveries=delivery_rows)
    return page("Webhooks", body)


def apps_page(apps: Sequence[App]) -> str:
    rows = join(
        Markup("<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>").format(
            a.id, a.name, join(Markup("<div>{}</div>").format(u) for u in a.redirect_urls)
        )
        for a in apps
    )
    body = Markup(
        "<section><table><tr><th>App id</th><th>Name</th><th>Redirect URLs</th></tr>{rows}</table></section>"
        '<section><h2>Register an app</h2><form method="post" action="/apps"><label for="app_id">App id</label>'
        '<input type="text" id="app_id" name="app_id" placeholder="P6LEX1U" required><label for="name">Name</label>'
        '<input type="text" id="name" name="name"><label for="redirect_urls">Redirect URLs (one per line)</label>'
        '<textarea id="redirect_urls" name="redirect_urls" rows="3"></textarea>'
        '<p><button class="primary" type="submit">Register</button></p></form></section>'
    ).format(rows=rows)
    return page("Apps", body)


def received_page(received: Sequence[Received]) -> str:
    rows = join(
        Markup(
            "<tr><td>{seq}</td><td>{at}</td><td>{path}</td><td>{status}</td><td>{action}</td><td>{outcome}</td>"
            "<td><details><summary>JSON</summary>{request}</details></td></tr>"
        ).format(
            seq=r.seq,
            at=r.at,
            path=r.path,
            status=r.status,
            action=r.action or "",
            outcome=r.outcome,
            request=json_block(r.request),
        )
        for r in list(received)[-300:]
    )
    body = Markup(
        '<section><p class="muted">The last 300; all of them as JSON at <a href="/_sandbox/api/received">'
        "/_sandbox/api/received</a>.</p><table><tr><th>#</th><th>At</th><th>Path</th><th>Status</th><th>Action</th>"
        "<th>Outcome</th><th>Body</th></tr>{rows}</table></section>"
    ).format(rows=rows)
    return page("Received events", body)


# -- the handshake pages --------------------------------------------------------------------


def login_page(
    *,
    title: str,
    intro: str,
    carry: dict[str, str | None],
    accounts: Sequence[Account],
    cancel: bool,
    notice: Markup | None = None,
) -> str:
    """Step one of both handshakes: "log in" to an account by its subdomain."""
    options = join(Markup('<option value="{0}">{0}</option>').format(a.id) for a in accounts)
    cancel_button = (
        Markup('<button type="submit" name="decision" value="cancel" formnovalidate>Cancel</button>') if cancel else ""
    )
    body = Markup(
        '{notice}<section><p>{intro}</p><form method="post" action="/login">{carry}'
        '<label for="subdomain">Account subdomain</label><input type="text" id="subdomain" name="subdomain" '
        'list="accounts" value="acme" required><datalist id="accounts">{options}</datalist>'
        '<label for="email">Email</label><input type="text" id="email" name="email" value="alex@acme.example">'
        '<p><button class="primary" type="submit" name="decision" value="login">Log in</button> {cancel}</p>'
        "</form></section>"
    ).format(
        notice=notice if notice is not None else "",
        intro=intro,
        carry=hidden(carry),
        options=options,
        cancel=cancel_button,
    )
    return page(title, body)


#: Shown on every Connect page: PagerDuty retired Connect in 2021 (pagerduty-protocols.md).
CONNECT_RETIRED = Markup(
    '<section class="error" data-connect-retired><p><strong>PagerDuty retired Connect in 2021</strong>: '
    "real PagerDuty no longer offers this page, and a new integration built on it will not work. The "
    "sandbox keeps it only to test integrations made before then. Build new integrations on the install "
    "flow (<code>/install/integration</code>) or a pasted integration key.</p></section>"
)


def _switch_account(query: dict[str, str], path: str) -> str:
    """Log out, then come back to this very handshake page."""
    return "/logout?" + urlencode({"next": f"{path}?{urlencode(query)}"})


def connect_page(*, vendor: str, callback: str, account: Account, services: Sequence[Service]) -> str:
    options = join(Markup('<option value="{}">{}</option>').format(s.id, s.name) for s in services)
    body = Markup(
        "{retired}<section><p>Logged in to <strong data-account>{account}</strong> ({name}). "
        '<a href="{switch}">Switch account</a></p>'
        "<p><strong>{vendor}</strong> would like to send alerts to a PagerDuty service. Pick one, or create a new "
        "service for it.</p>"
        '<form method="post" action="/connect">{carry}'
        '<label for="service">Existing service</label><select id="service" name="service_id">'
        '<option value="">(create a new one)</option>{options}</select>'
        '<label for="new_service">New service name</label><input type="text" id="new_service" name="new_service">'
        '<p><button class="primary" type="submit" name="decision" value="connect">Connect</button> '
        '<button type="submit" name="decision" value="cancel">Cancel</button></p></form></section>'
    ).format(
        account=account.id,
        name=account.name,
        retired=CONNECT_RETIRED,
        switch=_switch_account({"vendor": vendor, "callback": callback}, "/connect"),
        vendor=vendor,
        carry=hidden({"vendor": vendor, "callback": callback}),
        options=options,
    )
    return page("PagerDuty Connect", body)


def install_page(
    *, app: App, redirect_url: str, account: Account, services: Sequence[Service], rulesets: Sequence[Ruleset]
) -> str:
    service_boxes = join(
        Markup(
            '<div><label style="font-weight:400"><input type="checkbox" name="service_ids" value="{}"> {}</label></div>'
        ).format(s.id, s.name)
        for s in services
    )
    ruleset_boxes = join(
        Markup(
            '<div><label style="font-weight:400"><input type="checkbox" name="ruleset_ids" value="{}"> {} '
            "(ruleset)</label></div>"
        ).format(r.id, r.name)
        for r in rulesets
    )
    body = Markup(
        "<section><p>Logged in to <strong data-account>{account}</strong> ({name}). "
        '<a href="{switch}">Switch account</a></p>'
        "<p>Connect <strong>{app}</strong> to PagerDuty: pick the services (and rulesets) it may send events to.</p>"
        '<form method="post" action="/install/integration">{carry}'
        "<fieldset><legend>Services</legend>{services}"
        '<label for="new_service">Or create a new service</label><input type="text" id="new_service" '
        'name="new_service"></fieldset><fieldset><legend>Rulesets</legend>{rulesets}</fieldset>'
        '<p><button class="primary" type="submit" name="decision" value="connect">Connect</button> '
        '<button type="submit" name="decision" value="cancel">Cancel</button></p></form></section>'
    ).format(
        account=account.id,
        name=account.name,
        switch=_switch_account(
            {"app_id": app.id, "redirect_url": redirect_url, "version": "2"}, "/install/integration"
        ),
        app=app.name,
        carry=hidden({"app_id": app.id, "redirect_url": redirect_url, "version": "2"}),
        services=service_boxes,
        rulesets=ruleset_boxes or Markup('<p class="muted">No rulesets.</p>'),
    )
    return page("Install an integration", body)
