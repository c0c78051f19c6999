"""Bounded histories: the customers the engine remembers (last agent, recent contacts) and the
client request ids of created tasks (for idempotent retries), each forgetting its least recent
entries past its limit. (Closed tasks are kept, as bytes, by `task_table.py`.)"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgspec

from router.core.limits import REQUEST_IDS_KEPT_MAX
from router.core.model import TaskSpec

CUSTOMERS_KEPT_MAX = 200_000
"""Customers whose last agent and recent contacts are remembered, least recent forgotten first."""
CANONICAL = msgspec.msgpack.Encoder(order="deterministic")
"""MessagePack with sets and dict keys sorted: equal values give equal bytes."""


@dataclass(slots=True)
class CustomerHistory:
    last_worker_id: str = ""
    contacts_ms: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class HistoriesShare:
    """The histories' share of a snapshot, oldest entries first."""

    customers: list[tuple[str, CustomerHistory]]
    request_fingerprints: list[tuple[str, str, bytes]]
    """(client request id, task id, payload fingerprint)."""


def payload_fingerprint(spec: TaskSpec) -> bytes:
    """16 bytes that tell two task payloads apart: a hash of their canonical encoding. Equal
    specs as the journal gives them (`codec.normalize`) have equal fingerprints."""
    return hashlib.blake2b(CANONICAL.encode(spec), digest_size=16).digest()


class Histories:
    def __init__(self) -> None:
        self._customers: OrderedDict[str, CustomerHistory] = OrderedDict()
        self._request_ids: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        """Per client request id, the task it created and its payload's fingerprint (see
        `payload_fingerprint`): not the payload, which would keep a million specs and their
        attributes alive long after their tasks are forgotten."""

    # -- customers --------------------------------------------------------------------------

    def customer(self, customer_id: str) -> CustomerHistory:
        """The customer's history, created if new, now the most recently used."""
        history = self._customers.get(customer_id)
        if history is None:
            history = self._customers[customer_id] = CustomerHistory()
            _trim(self._customers, CUSTOMERS_KEPT_MAX)
        else:
            self._customers.move_to_end(customer_id)
        return history

    def known_customer(self, customer_id: str) -> CustomerHistory | None:
        """The customer's history if remembered (a read: its recency is unchanged)."""
        return self._customers.get(customer_id) if customer_id else None

    def forget_customer(self, customer_id: str) -> bool:
        """Forgets the customer (an erasure); whether it was remembered."""
        return self._customers.pop(customer_id, None) is not None

    # -- client request ids -----------------------------------------------------------------

    def request(self, request_id: str) -> tuple[str, bytes] | None:
        """The task a client request id created and its payload's fingerprint, if known."""
        return self._request_ids.get(request_id)

    def record_request(self, request_id: str, task_id: str, fingerprint: bytes) -> None:
        self._request_ids[request_id] = (task_id, fingerprint)
        _trim(self._request_ids, REQUEST_IDS_KEPT_MAX)

    # -- snapshot and digest ----------------------------------------------------------------

    def save(self) -> HistoriesShare:
        return HistoriesShare(
            list(self._customers.items()),
            [(r, t, f) for r, (t, f) in self._request_ids.items()],
        )

    def restore(self, share: HistoriesShare) -> None:
        self._customers = OrderedDict(share.customers)
        self._request_ids = OrderedDict((r, (t, f)) for r, t, f in share.request_fingerprints)

    def digest_customers(self) -> list[list[Any]]:
        return [[c, h] for c, h in self._customers.items()]

    def digest_request_ids(self) -> list[list[Any]]:
        return [[r, t, f] for r, (t, f) in self._request_ids.items()]


def _trim(mapping: OrderedDict[str, Any], size_max: int) -> None:
    while len(mapping) > size_max:
        mapping.popitem(last=False)
