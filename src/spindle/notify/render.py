"""What a notification says, from its payload (``outbox.run_payload`` plus the details the
dispatcher adds): the subject line, a one-line summary (the bell), the email's plain text
and HTML bodies, and the Slack message. Pure functions; HTML is escaped with
:func:`html.escape` (a run's name and log lines are the submitter's text)."""

from __future__ import annotations

from html import escape
from typing import Any

from spindle.notify.events import GROUP_DRAINED, SUBSCRIPTION_FAILING, TEST


def subject(payload: dict[str, Any]) -> str:
    data = payload.get("data", {})
    if payload["type"] == TEST:
        return "Spindle: a test notification"
    if payload["type"] == SUBSCRIPTION_FAILING:
        return f"Your {data.get('channel')} subscription {data.get('subscription_id')} is failing"
    if payload["type"] == GROUP_DRAINED:
        return f"Run group {data.get('group_name')} ({data.get('group_id')}) drained"
    name, run_id = data.get("run_name"), data.get("run_id")
    label = run_id if name == run_id else f"{name} ({run_id})"
    return f"Run {label} {data.get('state')}"


def summary(payload: dict[str, Any]) -> str:
    data = payload.get("data", {})
    if payload["type"] == TEST:
        return "This is a test notification from Spindle."
    if payload["type"] == SUBSCRIPTION_FAILING:
        return (
            f"{data.get('failures')} deliveries in a row to {data.get('target')} failed; "
            f"the last: {data.get('error')}. Spindle keeps trying."
        )
    if payload["type"] == GROUP_DRAINED:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(data.get("counts", {}).items()))
        return f"Every run of the group ended: {data.get('total', 0)} runs ({counts})."
    parts = [f"{data.get('workflow_type')} workflow {data.get('workflow_url')}"]
    if data.get("duration_seconds") is not None:
        parts.append(f"ran {_duration(data['duration_seconds'])}")
    if data.get("reason"):
        parts.append(str(data["reason"]))
    if data.get("failing_task"):
        parts.append(f"failing task: {data['failing_task']}")
    return "; ".join(parts) + "."


def _duration(seconds: float) -> str:
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m}m {s}s" if h else f"{m}m {s}s" if m else f"{s}s"


def _links(data: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (label, data[key])
        for label, key in (("Run", "run_url"), ("Outputs", "outputs_url"), ("Group", "group_url"))
        if data.get(key)
    ]


def plain(payload: dict[str, Any]) -> str:
    data = payload.get("data", {})
    lines = [subject(payload), "", summary(payload), ""]
    if payload["type"] not in (TEST, GROUP_DRAINED):
        lines += [
            f"Workflow: {data.get('workflow_type')} {data.get('workflow_url')}",
            f"State: {data.get('state')}",
        ]
        if data.get("duration_seconds") is not None:
            lines.append(f"Duration: {_duration(data['duration_seconds'])}")
        if data.get("failing_task"):
            lines.append(f"Failing task: {data['failing_task']}")
        if data.get("log_tail"):
            lines += ["", "Last lines of its log:", *("    " + x for x in data["log_tail"])]
    lines.append("")
    lines += [f"{label}: {url}" for label, url in _links(data)]
    return "\n".join(lines).rstrip() + "\n"


def html(payload: dict[str, Any]) -> str:
    data = payload.get("data", {})
    out = [f"<h2>{escape(subject(payload))}</h2>", f"<p>{escape(summary(payload))}</p>"]
    if payload["type"] not in (TEST, GROUP_DRAINED):
        rows = [
            ("Workflow", f"{data.get('workflow_type')} {data.get('workflow_url')}"),
            ("State", str(data.get("state"))),
        ]
        if data.get("duration_seconds") is not None:
            rows.append(("Duration", _duration(data["duration_seconds"])))
        if data.get("failing_task"):
            rows.append(("Failing task", str(data["failing_task"])))
        out.append(
            "<table>"
            + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
            + "</table>"
        )
        if data.get("log_tail"):
            out.append(f"<pre>{escape(chr(10).join(data['log_tail']))}</pre>")
    links = _links(data)
    if links:
        out.append(
            "<p>"
            + " · ".join(f'<a href="{escape(url)}">{escape(label)}</a>' for label, url in links)
            + "</p>"
        )
    return "<!doctype html><html><body>" + "".join(out) + "</body></html>"


def slack(payload: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message (``text`` in Slack's mrkdwn, links as <url|label>)."""
    data = payload.get("data", {})
    text = f"*{_mrkdwn(subject(payload))}*\n{_mrkdwn(summary(payload))}"
    if data.get("log_tail"):
        text += "\n```" + _mrkdwn("\n".join(data["log_tail"][-10:])) + "```"
    links = _links(data)
    if links:
        text += "\n" + " · ".join(f"<{url}|{label}>" for label, url in links)
    return {"text": text}


def _mrkdwn(text: str) -> str:
    """Slack's three escapes (so a run's name cannot make a link or a mention)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
