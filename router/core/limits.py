"""Every limit of the router, in one place. Each is documented in the README and hitting one
yields a clear `INVALID_ARGUMENT` or `RESOURCE_EXHAUSTED`, never a crash or silent truncation."""

from typing import Final

ID_CHARS_MAX: Final = 128
"""Longest id (task, worker, queue, channel, activity, skill, language, policy, offer, request
id, customer id), and longest key of a skill or channel map."""

ATTRIBUTES_BYTES_MAX: Final = 16 * 1024
"""Largest attributes document of a task or worker, measured in its canonical encoding: compact
JSON (no spaces), UTF-8, integral numbers within +-2**53 written as integers (protobuf's Struct
carries every number as a double: `3` arrives as `3.0` and is measured as `3`)."""

ATTRIBUTES_DEPTH_MAX: Final = 16
"""Deepest nesting of objects and arrays in attributes (the document itself is level 1). Well
under what protobuf decodes (about 32 levels of objects), so that a deeper document meets this
limit's message rather than a decoding error."""

SAFE_INTEGER_MAX: Final = 2**53
"""Largest integral number written as an integer in the canonical encoding of attributes (a
double holds every integer up to here exactly; JSON readers agree on them)."""

SKILLS_PER_WORKER_MAX: Final = 128
"""Most skills one worker may list."""

SKILLS_PER_TASK_MAX: Final = 32
"""Most required plus preferred skills one task may list."""

SKILLS_PER_WORKSPACE_MAX: Final = 4096
"""Most distinct skill names across the workspace (the width of the skill matrix)."""

LANGUAGES_PER_WORKER_MAX: Final = 32

CHANNELS_MAX: Final = 64
"""Most channels a workspace may define."""

QUEUES_MAX: Final = 1024

WORKERS_MAX: Final = 200_000

QUEUE_DEPTH_MAX: Final = 1_000_000
"""Most tasks that may wait in one queue (a queue may set a lower `depth_max`)."""

OPEN_TASKS_MAX: Final = 2_000_000
"""Most open (not completed or canceled) tasks in the workspace."""

CAPACITY_PER_CHANNEL_MAX: Final = 100
PRIORITY_ABS_MAX: Final = 1000
SKILL_LEVEL_MAX: Final = 5.0

RESERVATION_TIMEOUT_S_DEFAULT: Final = 30.0
RESERVATION_TIMEOUT_S_MAX: Final = 3600.0
WRAPUP_S_MAX: Final = 3600.0
TASK_TTL_S_DEFAULT: Final = 24 * 3600.0
TASK_TTL_S_MAX: Final = 30 * 24 * 3600.0

CLOSED_TASKS_KEPT_MAX: Final = 100_000
"""Completed and canceled tasks kept for GetTask/ListTasks, oldest forgotten first."""

REQUEST_IDS_KEPT_MAX: Final = 1_000_000
"""Client request ids remembered for idempotent retries, oldest forgotten first."""

POLICIES_MAX: Final = 1024
"""Most routing policies a workspace may define."""
FILTERS_PER_POLICY_MAX: Final = 64
STEPS_PER_ROUTE_MAX: Final = 16
STEP_TIMEOUT_S_MAX: Final = TASK_TTL_S_MAX
EXCEPTION_RULES_PER_QUEUE_MAX: Final = 16
OPEN_HOURS_PER_CALENDAR_MAX: Final = 64
HOLIDAYS_PER_CALENDAR_MAX: Final = 1000
PRIORITY_AGING_PER_MIN_MAX: Final = 1000.0
OFFER_WORKERS_MAX: Final = 16
"""Most workers one task may be offered to at once."""
ASSIGNMENT_WINDOW_S_MAX: Final = 60.0
ASSIGNMENT_ROUND_TASKS_MAX: Final = 256
"""Most tasks one assignment round considers (the longest-waiting first); the rest wait for
the next round."""
KNOWN_AGENT_WAIT_S_MAX: Final = 3600.0
PRIORITY_DELTA_ABS_MAX: Final = 2 * PRIORITY_ABS_MAX
"""Largest raise (or cut) of a priority by a routing step or an exception rule: enough to carry
any priority to any other."""
DISPLAY_NAME_CHARS_MAX: Final = 256
"""Longest display name of a worker, queue, channel or routing policy."""
FILTER_NAME_CHARS_MAX: Final = 128
CANCEL_REASON_CHARS_MAX: Final = 256
"""Longest reason of a cancel (`CancelTask.reason`, a cancel action of an exception rule or of
after hours)."""
REJECT_REASON_CHARS_MAX: Final = 256
"""Longest reason a worker gives for rejecting an offer."""
CALENDAR_TEXT_CHARS_MAX: Final = 64
"""Longest time zone name, opening time ("HH:MM") or holiday ("YYYY-MM-DD") of business hours."""
ADVANCE_TIME_MS_MAX: Final = 366 * 24 * 3600 * 1000
"""Furthest the test clock moves in one `AdvanceTime` (a year and a day)."""
CLOCK_MS_MAX: Final = 253_402_300_799_999
"""The latest time the router's clock may reach: the last millisecond of 9999 (calendars work
in dates up to then)."""

TRANSFERS_PER_TASK_MAX: Final = 10
"""Most transfers (cold or warm, whatever became of them) one task may have: a transfer loop
ends here with RESOURCE_EXHAUSTED."""
TRANSFER_EXPRESSIONS_MAX: Final = 64
"""Most different worker expressions that tasks waiting after cold transfers to a requirement
are held to at once (each keeps a membership row of every worker): one more is refused with
RESOURCE_EXHAUSTED."""
PARTICIPANTS_PER_TASK_MAX: Final = 6
"""Most participants of one task: its primary, consults and monitors, invited or joined."""
PAUSE_MAX_S_DEFAULT: Final = 7 * 24 * 3600.0
"""A queue's default `pause_max_s`: a task paused longer is resumed or canceled."""
PAUSE_MAX_S_MAX: Final = 30 * 24 * 3600.0
"""Largest `pause_max_s` a queue may set."""
TRANSFER_REASON_CHARS_MAX: Final = 256
"""Longest reason given for a transfer or a pause."""
PRESENCE_TIMEOUT_S_DEFAULT: Final = 30.0
"""How long a Connect stream may stay silent (no heartbeat or other message) before the router
ends it and the worker's presence is lost (`PresenceSettings.presence_timeout_s`)."""
PRESENCE_TIMEOUT_S_MAX: Final = 3600.0
PRESENCE_GRACE_S_DEFAULT: Final = 10.0
"""How long a worker whose stream was lost keeps its offers and activity, waiting for it to
reconnect (`PresenceSettings.presence_grace_s`)."""
PRESENCE_GRACE_S_MAX: Final = 3600.0
REQUEUE_AFTER_DISCONNECT_S_MAX: Final = 7 * 24 * 3600.0
"""Longest `requeue_after_disconnect_s` of a channel."""
MISSED_OFFERS_MAX_LIMIT: Final = 100
"""Largest `PresenceSettings.missed_offers_max` (offers in a row a worker may let expire)."""

# -- the customer timeline (`customers.py`, `router/api/timeline.py`) --------------------------
TIMELINE_TOKEN_CHARS_MAX: Final = 64
"""Longest disposition code, agent action, entry kind, entry source or tag (a token: letters,
digits, `_ . -`; a source may hold any printable character)."""
TAGS_PER_ENTRY_MAX: Final = 16
"""Most tags of one outcome or appended entry."""
OUTCOME_NOTE_CHARS_MAX: Final = 4096
"""Longest note of an outcome (`RecordOutcome.note`)."""
TIMELINE_SUMMARY_CHARS_MAX: Final = 1024
"""Longest agent action reason or appended entry summary."""
ENTRY_DATA_BYTES_MAX: Final = 4 * 1024
"""Largest `data` of an appended entry and `attributes` of a customer profile, in the canonical
encoding of attributes."""
SEALED_BYTES_MAX: Final = 20 * 1024
"""Largest sealed (encrypted) blob a timeline command carries: a note, a reason, an entry's
summary and data, a profile, with their encoding and the cipher's overhead."""
PROFILE_TIER_CHARS_MAX: Final = 32
"""Longest `CustomerProfile.tier`."""
PERSONAL_ATTRIBUTE_KEYS_MAX: Final = 32
"""Most task attribute keys the timeline settings may mark personal."""
RETENTION_DAYS_DEFAULT: Final = 365
RETENTION_DAYS_MAX: Final = 3650
"""Longest retention of timeline entries (`TimelineSettings.retention_days`)."""
ENTRIES_PER_CUSTOMER_DEFAULT: Final = 1000
ENTRIES_PER_CUSTOMER_MAX: Final = 10_000
"""Most timeline entries kept per customer, oldest dropped first."""
IDENTITY_VERIFICATION_WINDOW_S_DEFAULT: Final = 900.0
IDENTITY_VERIFICATION_WINDOW_S_MAX: Final = 86_400.0
"""Longest time an `identity_verified` entry makes `customer.verified` true."""
CONTACTS_KEPT_PER_CUSTOMER_MAX: Final = 64
"""Contacts (tasks created) of the last 7 days the routing context keeps per customer, for
`customer.contacts_24h` and `customer.contacts_7d` (which therefore never exceed it)."""
TASK_IDS_KEPT_PER_CUSTOMER_MAX: Final = 32
"""A customer's most recent task ids the routing context keeps (`EraseCustomer` is refused
while one of them is open)."""
ERASE_REASON_CHARS_MAX: Final = 256
"""Longest reason given for an erasure (`EraseCustomer.reason`, kept in the audit log)."""
TIMELINE_PAGE_SIZE_DEFAULT: Final = 50
"""Entries a GetTimeline page holds when the request leaves `page_size` at 0."""
TIMELINE_PAGE_SIZE_MAX: Final = 200
"""Largest GetTimeline `page_size` (a larger one is INVALID_ARGUMENT); a page is also cut to fit
3.5 MiB, like the List calls'."""
TIMELINE_SEARCH_CHARS_MAX: Final = 128
"""Longest text a GetTimeline request searches for."""
