"""Customers: what routing knows of each customer (its routing context) and the workspace's
timeline settings.

Only customers named by the timeline's commands are kept: a task created with
`CreateTask.customer_keyed` (its `spec.customer_id` is a customer key, the keyed hash the API
made of the id), an outcome, an appended entry, a profile. Per customer key: its contacts of the
last 7 days (created time, task order, sentiment), its recent task ids (`EraseCustomer` is
refused while one is open), the latest outcome's resolution and tags, the latest contact's
sentiment, and the profile's routing fields (tier, language, verified) with the time until
which an `identity_verified` entry vouches for it. At most `CUSTOMERS_KEPT_MAX`, least recently
used forgotten first, like the histories'.

Routing reads it as the reserved `customer` object of a task's document (`document`): counts
of contacts made before the task, so that evaluating a policy's filters again gives the same
answer. The core never sees a customer id or personal text: the API hashes ids into keys and
seals text (notes, reasons, summaries, profiles) into opaque bytes, which events carry on to
the timeline (`router/timeline/`).

The digest includes this part only once it holds something, so that a journal written before
it existed replays to the digest it had."""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from router.core import commands as cmd
from router.core.errors import FailedPrecondition, InvalidArgument, quoted
from router.core.events import (
    AgentActionRecorded,
    CustomerErased,
    CustomerProfileChanged,
    Event,
    OutcomeRecorded,
    TimelineEntryAppended,
    TimelineSettingsChanged,
)
from router.core.histories import CUSTOMERS_KEPT_MAX
from router.core.limits import (
    CONTACTS_KEPT_PER_CUSTOMER_MAX,
    ENTRIES_PER_CUSTOMER_MAX,
    ID_CHARS_MAX,
    IDENTITY_VERIFICATION_WINDOW_S_MAX,
    PERSONAL_ATTRIBUTE_KEYS_MAX,
    PROFILE_TIER_CHARS_MAX,
    RETENTION_DAYS_MAX,
    SEALED_BYTES_MAX,
    TAGS_PER_ENTRY_MAX,
    TASK_IDS_KEPT_PER_CUSTOMER_MAX,
    TIMELINE_TOKEN_CHARS_MAX,
)
from router.core.model import TaskRecord, TimelineSettings
from router.core.results import ErasedCustomer, RecordedEntry, UpsertedProfile
from router.core.validation import check_id, check_text

if TYPE_CHECKING:
    from router.core.histories import Histories
    from router.core.identifiers import Identifiers
    from router.core.lifecycle import TaskLifecycle
    from router.core.timers import Clock

DAY_MS: Final = 24 * 3600 * 1000
WEEK_MS: Final = 7 * DAY_MS

RESOLUTIONS: Final = (0, 1, 2)
"""The API's `Resolution` values: unsaid, resolved, unresolved."""
RESOLVED: Final = 1

_CUSTOMER_KEY: Final = re.compile(r"ck_[0-9a-f]{32}")
"""What `router.privacy.sealing.customer_key` makes (the core never computes one, but it is
the one place that says what a customer key looks like: `is_customer_key`)."""
_TOKEN: Final = re.compile(r"[A-Za-z0-9_.\-]+")
"""A disposition, an action, an entry kind, a tag."""
_RESERVED_ATTRIBUTE_KEYS: Final = frozenset(
    {"channel", "priority", "sentiment", "customer_id", "language", "customer"}
)
"""Keys of a task's document that are not its attributes (`policies.task_document`)."""


@dataclass(slots=True)
class CustomerContext:
    """One customer's routing context."""

    contacts: tuple[tuple[int, int, float], ...] = ()
    """(created_ms, task seq, sentiment) of its contacts (keyed tasks created) of the last 7
    days, oldest first, at most CONTACTS_KEPT_PER_CUSTOMER_MAX."""
    task_ids: tuple[str, ...] = ()
    """Its most recent tasks, oldest first, at most TASK_IDS_KEPT_PER_CUSTOMER_MAX."""
    last_contact_ms: int = 0
    last_contact_seq: int = 0
    """The latest contact's task seq (0: none yet)."""
    last_sentiment: float = 0.0
    resolution: int = 0
    """The latest outcome's resolution (0: none said)."""
    tags: tuple[str, ...] = ()
    """The latest outcome's tags."""
    tier: str = ""
    language: str = ""
    verified: bool = False
    """The profile says the customer's identity is verified."""
    verified_until_ms: int = 0
    """An `identity_verified` entry vouches for the customer until then."""
    profile_updated_ms: int = 0


_NOBODY: Final = CustomerContext()
"""The context of a keyed customer never seen before (read only)."""


@dataclass(frozen=True, slots=True)
class CustomerView:
    """A customer's context as `GetCustomerContext` shows it, at a given time."""

    customer_key: str
    contacts_24h: int
    contacts_7d: int
    last_contact_ms: int
    last_agent_id: str
    resolution: int
    tags: tuple[str, ...]
    last_sentiment: float | None
    tier: str
    language: str
    verified: bool


@dataclass(slots=True)
class CustomersShare:
    """The customers' share of a snapshot (empty in snapshots taken before it existed)."""

    settings: TimelineSettings = field(default_factory=TimelineSettings)
    entry_seq: int = 0
    contexts: list[tuple[str, CustomerContext]] = field(default_factory=list)
    """Least recently used first."""


class Customers:
    """Every kept customer's routing context, and the timeline settings."""

    def __init__(self) -> None:
        self.settings = TimelineSettings()
        self.entry_seq = 0
        """Timeline entries this part has given ids to (`Identifiers.entry_id`)."""
        self.contexts: OrderedDict[str, CustomerContext] = OrderedDict()

    def connect(
        self,
        *,
        clock: Clock,
        events: list[Event],
        lifecycle: TaskLifecycle,
        histories: Histories,
        identifiers: Identifiers,
    ) -> None:
        self._clock = clock
        self._events = events
        self._lifecycle = lifecycle
        self._histories = histories
        self._ids = identifiers

    # -- reads ------------------------------------------------------------------------------

    def __contains__(self, customer_key: str) -> bool:
        return customer_key in self.contexts

    def document(
        self, customer_key: str, *, before_seq: int, at_ms: int, keyed: bool = False
    ) -> dict[str, Any] | None:
        """The `customer` object of the document of a task numbered `before_seq` and created at
        `at_ms`: None unless the customer is kept (or `keyed`: a keyed task being created, whose
        customer is new). Contacts are those made before the task; O(contacts kept)."""
        context = self.contexts.get(customer_key) if customer_key else None
        if context is None:
            if not keyed:
                return None
            context = _NOBODY
        day_start, week_start = at_ms - DAY_MS, at_ms - WEEK_MS
        contacts_24h = contacts_7d = 0
        last_sentiment: float | None = None
        for created_ms, seq, sentiment in context.contacts:
            if seq >= before_seq:
                break
            last_sentiment = sentiment
            if created_ms > week_start:
                contacts_7d += 1
                if created_ms > day_start:
                    contacts_24h += 1
        if last_sentiment is None and 0 < context.last_contact_seq < before_seq:
            last_sentiment = context.last_sentiment
        document: dict[str, Any] = {
            "known": True,
            "contacts_24h": contacts_24h,
            "contacts_7d": contacts_7d,
            "last_tags": list(context.tags),
            "verified": self._verified(context),
        }
        last_agent_id = self._last_agent_id(customer_key)
        if last_agent_id:
            document["last_agent_id"] = last_agent_id
        if context.resolution:
            document["last_resolved"] = context.resolution == RESOLVED
        if last_sentiment is not None:
            document["last_sentiment"] = last_sentiment
        if context.tier:
            document["tier"] = context.tier
        if context.language:
            document["language"] = context.language
        return document

    def view(self, customer_key: str) -> CustomerView | None:
        """The customer's context now (None when it is not kept)."""
        context = self.contexts.get(customer_key)
        if context is None:
            return None
        now_ms = self._clock.now_ms
        contacts_7d = sum(1 for c in context.contacts if c[0] > now_ms - WEEK_MS)
        contacts_24h = sum(1 for c in context.contacts if c[0] > now_ms - DAY_MS)
        return CustomerView(
            customer_key=customer_key,
            contacts_24h=contacts_24h,
            contacts_7d=contacts_7d,
            last_contact_ms=context.last_contact_ms,
            last_agent_id=self._last_agent_id(customer_key),
            resolution=context.resolution,
            tags=context.tags,
            last_sentiment=context.last_sentiment if context.last_contact_seq else None,
            tier=context.tier,
            language=context.language,
            verified=self._verified(context),
        )

    def open_task_ids(self, customer_key: str) -> list[str]:
        """The customer's recent tasks that are still open."""
        context = self.contexts.get(customer_key)
        if context is None:
            return []
        open_tasks = self._lifecycle.tasks.open
        return [task_id for task_id in context.task_ids if task_id in open_tasks]

    def _verified(self, context: CustomerContext) -> bool:
        return context.verified or context.verified_until_ms > self._clock.now_ms

    def _last_agent_id(self, customer_key: str) -> str:
        history = self._histories.known_customer(customer_key)
        return history.last_worker_id if history is not None else ""

    # -- contacts ---------------------------------------------------------------------------

    def contact(self, task: TaskRecord) -> None:
        """A keyed task was created: a contact of its customer."""
        context = self._touch(task.spec.customer_id)
        week_start = task.created_ms - WEEK_MS
        recent = tuple(c for c in context.contacts if c[0] > week_start)
        contact = (task.created_ms, task.seq, task.spec.sentiment)
        context.contacts = (*recent, contact)[-CONTACTS_KEPT_PER_CUSTOMER_MAX:]
        context.task_ids = (*context.task_ids, task.task_id)[-TASK_IDS_KEPT_PER_CUSTOMER_MAX:]
        context.last_contact_ms = task.created_ms
        context.last_contact_seq = task.seq
        context.last_sentiment = task.spec.sentiment

    # -- commands ---------------------------------------------------------------------------

    def record_outcome(self, command: cmd.RecordOutcome) -> RecordedEntry:
        check_id("task_id", command.task_id)
        check_id("worker_id", command.worker_id, required=False)
        check_token("disposition", command.disposition, required=False)
        if command.resolution not in RESOLUTIONS:
            raise InvalidArgument("resolution", f"unknown resolution {command.resolution}")
        check_sealed("note", command.sealed_note)
        check_tags("tags", command.tags)
        task = self._lifecycle.task(command.task_id)
        customer_key = customer_of(task)
        context = self._touch(customer_key)
        context.resolution = command.resolution
        context.tags = command.tags
        entry_id = self._next_entry_id()
        event = OutcomeRecorded(
            entry_id, customer_key, task.task_id, task.queue_id, task.spec.channel,
            command.worker_id, command.disposition, command.resolution, command.tags,
            command.sealed_note, command.note_private,
        )  # fmt: skip
        self._events.append(event)
        return RecordedEntry(entry_id, customer_key, self._clock.now_ms)

    def record_agent_action(self, command: cmd.RecordAgentAction) -> RecordedEntry:
        check_id("task_id", command.task_id)
        check_id("worker_id", command.worker_id)
        check_token("action", command.action, required=True)
        check_sealed("reason", command.sealed_reason)
        task = self._lifecycle.task(command.task_id)
        customer_key = customer_of(task)
        entry_id = self._next_entry_id()
        event = AgentActionRecorded(
            entry_id, customer_key, task.task_id, task.queue_id, task.spec.channel,
            command.worker_id, command.action, command.sealed_reason,
        )  # fmt: skip
        self._events.append(event)
        return RecordedEntry(entry_id, customer_key, self._clock.now_ms)

    def append_entry(self, command: cmd.AppendTimelineEntry) -> RecordedEntry:
        now_ms = self._clock.now_ms
        check_customer_key("customer_id", command.customer_key)
        check_token("entry.kind", command.kind, required=True)
        check_source("entry.source", command.source)
        check_sealed("entry", command.sealed_body)
        check_tags("tags", command.tags)
        at_ms = command.at_ms or now_ms
        if at_ms > now_ms:
            raise InvalidArgument("at_ms", f"is after now ({at_ms} > {now_ms})")
        oldest_ms = now_ms - self.settings.retention_days * DAY_MS
        if at_ms < oldest_ms:
            raise InvalidArgument(
                "at_ms",
                f"is before the retention of {self.settings.retention_days} days "
                f"({at_ms} < {oldest_ms})",
            )
        context = self._touch(command.customer_key)
        if command.identity_verified:
            window_ms = round(self.settings.identity_verification_window_s * 1000)
            context.verified_until_ms = max(context.verified_until_ms, at_ms + window_ms)
        entry_id = self._next_entry_id()
        event = TimelineEntryAppended(
            entry_id, command.customer_key, at_ms, command.kind, command.source,
            command.tags, command.sealed_body, command.identity_verified,
        )  # fmt: skip
        self._events.append(event)
        return RecordedEntry(entry_id, command.customer_key, at_ms)

    def upsert_profile(self, command: cmd.UpsertCustomerProfile) -> UpsertedProfile:
        check_customer_key("profile.customer_id", command.customer_key)
        check_text("profile.tier", command.tier, PROFILE_TIER_CHARS_MAX)
        check_id("profile.language", command.language, required=False)
        check_sealed("profile", command.sealed_profile)
        context = self._touch(command.customer_key)
        context.tier = command.tier
        context.language = command.language
        context.verified = command.verified
        context.profile_updated_ms = self._clock.now_ms
        event = CustomerProfileChanged(
            command.customer_key, command.tier, command.language, command.verified,
            command.sealed_profile,
        )  # fmt: skip
        self._events.append(event)
        return UpsertedProfile(command.customer_key, self._clock.now_ms)

    def erase(self, command: cmd.EraseCustomer) -> ErasedCustomer:
        customer_key = command.customer_key
        check_customer_key("customer_id", customer_key)
        open_task_ids = self.open_task_ids(customer_key)
        if open_task_ids:
            raise FailedPrecondition(
                f"the customer has open tasks: {', '.join(open_task_ids)}; complete or cancel "
                "them first"
            )
        context = self.contexts.pop(customer_key, None)
        self._histories.forget_customer(customer_key)
        forgotten = len(context.contacts) if context is not None else 0
        self._events.append(CustomerErased(customer_key, forgotten))
        return ErasedCustomer(customer_key, forgotten, context is not None)

    def upsert_settings(self, command: cmd.UpsertTimelineSettings) -> TimelineSettings:
        settings = command.settings
        validate_settings(settings)
        self.settings = settings
        self._events.append(TimelineSettingsChanged(settings))
        return settings

    def _touch(self, customer_key: str) -> CustomerContext:
        """The customer's context, created if new, now the most recently used."""
        context = self.contexts.get(customer_key)
        if context is None:
            context = self.contexts[customer_key] = CustomerContext()
            while len(self.contexts) > CUSTOMERS_KEPT_MAX:
                self.contexts.popitem(last=False)
        else:
            self.contexts.move_to_end(customer_key)
        return context

    def _next_entry_id(self) -> str:
        self.entry_seq += 1
        return self._ids.entry_id(self.entry_seq)

    # -- snapshot and digest ----------------------------------------------------------------

    def save(self) -> CustomersShare:
        return CustomersShare(self.settings, self.entry_seq, list(self.contexts.items()))

    def restore(self, share: CustomersShare) -> None:
        self.settings = share.settings
        self.entry_seq = share.entry_seq
        self.contexts = OrderedDict(share.contexts)

    def holds_something(self) -> bool:
        return bool(self.contexts or self.entry_seq or self.settings != TimelineSettings())

    def digest_state(self) -> list[Any]:
        return [self.settings, self.entry_seq, list(self.contexts.items())]

    def check(self) -> None:
        """Raises AssertionError when a context breaks its bounds (for tests)."""
        assert len(self.contexts) <= CUSTOMERS_KEPT_MAX
        for customer_key, context in self.contexts.items():
            assert is_customer_key(customer_key), customer_key
            assert len(context.contacts) <= CONTACTS_KEPT_PER_CUSTOMER_MAX, customer_key
            assert len(context.task_ids) <= TASK_IDS_KEPT_PER_CUSTOMER_MAX, customer_key
            seqs = [seq for _, seq, _ in context.contacts]
            assert seqs == sorted(seqs), f"{customer_key} contacts out of order"
            if context.contacts:
                assert context.contacts[-1][1] == context.last_contact_seq, customer_key
            assert context.resolution in RESOLUTIONS, customer_key


# -- checks ------------------------------------------------------------------------------------


def is_customer_key(text: str) -> bool:
    return _CUSTOMER_KEY.fullmatch(text) is not None


def customer_of(task: TaskRecord) -> str:
    """The customer key of a keyed task; refused for a task without one."""
    customer_key = task.spec.customer_id
    if not customer_key:
        raise FailedPrecondition(f"task {task.task_id} has no customer_id")
    if not is_customer_key(customer_key):
        raise FailedPrecondition(
            f"task {task.task_id} was created before customer keys: its customer has no timeline"
        )
    return customer_key


def check_customer_key(field_name: str, customer_key: str) -> None:
    if not customer_key:
        raise InvalidArgument(field_name, "is required")
    if not is_customer_key(customer_key):
        raise InvalidArgument(field_name, f"{quoted(customer_key)} is not a customer key")


def check_token(field_name: str, value: str, *, required: bool) -> None:
    """A disposition, action, kind or tag: letters, digits, `_ . -`, at most 64 characters."""
    if not value:
        if required:
            raise InvalidArgument(field_name, "is required")
        return
    check_text(field_name, value, TIMELINE_TOKEN_CHARS_MAX)
    if not _TOKEN.fullmatch(value):
        raise InvalidArgument(
            field_name, f"{quoted(value)} may hold only letters, digits and _ . -"
        )


def check_source(field_name: str, value: str) -> None:
    check_text(field_name, value, TIMELINE_TOKEN_CHARS_MAX)
    if not value.isprintable():
        raise InvalidArgument(field_name, f"{quoted(value)} holds a control character")


def check_tags(field_name: str, tags: tuple[str, ...]) -> None:
    if len(tags) > TAGS_PER_ENTRY_MAX:
        raise InvalidArgument(
            field_name, f"has {len(tags)} tags, the limit is {TAGS_PER_ENTRY_MAX}"
        )
    for index, tag in enumerate(tags):
        check_token(f"{field_name}[{index}]", tag, required=True)


def check_sealed(field_name: str, sealed: bytes) -> None:
    if len(sealed) > SEALED_BYTES_MAX:
        raise InvalidArgument(
            field_name, f"is {len(sealed)} bytes sealed, the limit is {SEALED_BYTES_MAX}"
        )


def validate_settings(settings: TimelineSettings) -> None:
    keys = settings.personal_attribute_keys
    if len(keys) > PERSONAL_ATTRIBUTE_KEYS_MAX:
        raise InvalidArgument(
            "settings.personal_attribute_keys",
            f"has {len(keys)} keys, the limit is {PERSONAL_ATTRIBUTE_KEYS_MAX}",
        )
    for index, key in enumerate(keys):
        name = f"settings.personal_attribute_keys[{index}]"
        if not key:
            raise InvalidArgument(name, "is empty")
        check_text(name, key, ID_CHARS_MAX)
        if key in _RESERVED_ATTRIBUTE_KEYS or key.startswith("$"):
            raise InvalidArgument(name, f"{quoted(key)} is a reserved key")
        if key in keys[:index]:
            raise InvalidArgument(name, f"{quoted(key)} is listed twice")
    if not 1 <= settings.retention_days <= RETENTION_DAYS_MAX:
        raise InvalidArgument(
            "settings.retention_days",
            f"must be between 1 and {RETENTION_DAYS_MAX}, got {settings.retention_days}",
        )
    if not 1 <= settings.entries_per_customer_max <= ENTRIES_PER_CUSTOMER_MAX:
        raise InvalidArgument(
            "settings.entries_per_customer_max",
            f"must be between 1 and {ENTRIES_PER_CUSTOMER_MAX}, "
            f"got {settings.entries_per_customer_max}",
        )
    window_s = settings.identity_verification_window_s
    if not (math.isfinite(window_s) and 0 < window_s <= IDENTITY_VERIFICATION_WINDOW_S_MAX):
        raise InvalidArgument(
            "settings.identity_verification_window_s",
            f"must be above 0 and at most {IDENTITY_VERIFICATION_WINDOW_S_MAX:g}, got {window_s!r}",
        )
