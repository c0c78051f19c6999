"""Every limit of the router, in one place. Each is documented in the README and hitting one
yields a clear `INVALID_ARGUMENT` or `RESOURCE_EXHAUSTED`, never a crash or silent truncation."""

from typing import Final

ID_CHARS_MAX: Final = 128
"""Longest id (task, worker, queue, channel, activity, request id)."""

ATTRIBUTES_BYTES_MAX: Final = 16 * 1024
"""Largest attributes document of a task or worker, measured as compact UTF-8 JSON."""

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
