"""The audit trail: every configuration change and every refused call, as one JSON line each on
the `switchboard.audit` logger, and counted in Prometheus.

A line names the method, the caller (token subject and role), its peer address and a short
summary of the request made of its ids only (task, worker, queue, reservation...), each cut to
`SUMMARY_ID_CHARS_MAX`: never attributes, names, customer ids or the token itself."""

from __future__ import annotations

import json
import logging
from typing import Any

from google.protobuf.message import Message

from router.api.authn import Principal
from router.obs.metrics import RouterMetrics

AUDIT_LOGGER_NAME = "switchboard.audit"
SUMMARY_ID_CHARS_MAX = 64
SUMMARY_IDS_MAX = 4
_NOT_ID = frozenset({"customer_id", "client_request_id"})
"""Id fields that identify a customer or could carry personal data: left out."""

log = logging.getLogger(AUDIT_LOGGER_NAME)


def summary(request: Any) -> dict[str, str]:
    """The request's ids (top level and one message deep), e.g. {"queue.queue_id": "billing"}."""
    found: dict[str, str] = {}
    if not isinstance(request, Message):
        return found
    for field, value in request.ListFields():
        if isinstance(value, Message):
            for inner, inner_value in value.ListFields():
                if _is_id(inner.name, inner_value):
                    found[f"{field.name}.{inner.name}"] = inner_value[:SUMMARY_ID_CHARS_MAX]
        elif _is_id(field.name, value):
            found[field.name] = value[:SUMMARY_ID_CHARS_MAX]
        if len(found) >= SUMMARY_IDS_MAX:
            break
    return dict(list(found.items())[:SUMMARY_IDS_MAX])


def _is_id(name: str, value: Any) -> bool:
    return name.endswith("_id") and name not in _NOT_ID and isinstance(value, str)


class Audit:
    """Writes and counts the audit events."""

    def __init__(self, metrics: RouterMetrics) -> None:
        self._refusals = metrics.auth_refusals
        self._changes = metrics.admin_changes

    def refused(
        self,
        *,
        method: str,
        reason: str,
        message: str,
        principal: Principal | None,
        request: Any,
        peer: str,
    ) -> None:
        """A call refused UNAUTHENTICATED or PERMISSION_DENIED."""
        self._refusals.labels(reason).inc()
        _write("refused", method, principal, request, peer, reason=reason, message=message)

    def changed(
        self, *, method: str, principal: Principal, request: Any, peer: str, outcome: str
    ) -> None:
        """A configuration change answered with `outcome` (a status code's name)."""
        self._changes.labels(method.rsplit("/", 1)[-1]).inc()
        _write("admin_change", method, principal, request, peer, outcome=outcome)


def erased(
    *,
    principal: Principal,
    peer: str,
    customer_key: str,
    reason: str,
    data_key_destroyed: bool,
    timeline_entries_erased: int,
    profile_erased: bool,
    contacts_forgotten: int,
) -> None:
    """A customer erased (`EraseCustomer`): the customer key (never the id), the reason the
    admin gave, and what was erased. Written besides the call's own `admin_change` line."""
    entry = {
        "event": "customer_erased",
        "subject": principal.subject,
        "role": principal.role.value,
        "peer": peer,
        "customer_key": customer_key,
        "reason": reason,
        "data_key_destroyed": data_key_destroyed,
        "timeline_entries_erased": timeline_entries_erased,
        "profile_erased": profile_erased,
        "contacts_forgotten": contacts_forgotten,
    }
    log.info("%s", json.dumps(entry, sort_keys=True))


def _write(
    event: str, method: str, principal: Principal | None, request: Any, peer: str, **more: str
) -> None:
    entry = {
        "event": event,
        "method": method,
        "subject": principal.subject if principal is not None else "",
        "role": principal.role.value if principal is not None else "",
        "peer": peer,
        "request": summary(request),
        **more,
    }
    log.info("%s", json.dumps(entry, sort_keys=True))
