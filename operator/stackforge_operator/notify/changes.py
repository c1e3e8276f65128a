"""Pure: incidents notified before vs incidents now -> what to say, and what to remember.

An incident is announced once when it opens and once when it resolves; while
it stays open nothing is sent, however often this runs. Events the tenant
does not subscribe to are neither announced nor remembered, and an incident
whose event was unsubscribed meanwhile is forgotten silently: "resolved"
would be untrue.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from stackforge_operator.models.tenant import (
    MAX_INCIDENTS,
    NotificationEvent,
    NotificationsSpec,
    OpenIncident,
)
from stackforge_operator.notify.incidents import Incident

# status.incidents holds at most this many (its schema's maxItems): a status the
# API server refuses would stop the tenant's reconciles, not just its messages.
MAX_OPEN = MAX_INCIDENTS


class State(enum.StrEnum):
    OPENED = "opened"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Change:
    """One message to send: an incident opened or resolved."""

    state: State
    key: str
    event: NotificationEvent
    since: datetime
    summary: str
    at: datetime


def enabled_events(spec: NotificationsSpec | None) -> frozenset[NotificationEvent]:
    """What the tenant subscribes to: nothing without channels, all events by default."""
    if spec is None:
        return frozenset()
    return frozenset(NotificationEvent) if spec.events is None else frozenset(spec.events)


def diff(
    before: Sequence[OpenIncident],
    now: Sequence[Incident],
    enabled: Collection[NotificationEvent],
    at: datetime,
) -> tuple[list[OpenIncident], list[Change]]:
    """(the incidents to remember, the messages to send)."""
    known = {i.key: i for i in before}
    # Undecided: kept when announced, never opened.
    current = {i.key: i for i in now if i.event in enabled
               and (not i.undecided or i.key in known)}
    # Beyond the cap, incidents already announced keep their place; new ones wait.
    kept = sorted(current, key=lambda key: (key not in known, key))[:MAX_OPEN]
    current = {key: current[key] for key in kept}
    remember = [
        # An incident keeps the start it was announced with.
        known[key] if key in known else OpenIncident(key=key, event=i.event, since=i.since)
        for key, i in sorted(current.items())
    ]
    changes = [Change(State.OPENED, key, i.event, i.since, i.summary, at)
               for key, i in sorted(current.items()) if key not in known]
    changes += [Change(State.RESOLVED, key, old.event, old.since, resolved_summary(old), at)
                for key, old in sorted(known.items())
                if key not in current and old.event in enabled]
    return remember, changes


def farewell(
    before: Sequence[OpenIncident], enabled: Collection[NotificationEvent], at: datetime,
) -> list[Change]:
    """The tenant was deleted: every incident it announced is resolved, saying why
    (otherwise receivers would keep them open for ever)."""
    return [Change(State.RESOLVED, old.key, old.event, old.since,
                   f"{resolved_summary(old)}: tenant deleted", at)
            for old in sorted(before, key=lambda i: i.key) if old.event in enabled]


def resolved_summary(incident: OpenIncident) -> str:
    _, _, subject = incident.key.partition("/")
    return f"{incident.event.value}{f' ({subject})' if subject else ''} resolved"
