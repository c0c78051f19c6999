"""The agent-side SDK of Switchboard: an agent desktop's session on the router's Connect stream,
a front end's task client, an operator's admin client, and the SDK's error tree (see
`workers._errors`). An agent's session and a front end's task client make the same
conversation calls (transfers, pause and resume, participants: `workers._conversations`), and
the timeline calls (outcomes, agent actions, a customer's timeline: `workers._timeline`).

`workers.fleet` simulates a fleet of agents with this SDK (the live demo, `router.demo`, runs one).
The SDK imports the generated API (`router._proto`) and nothing else of the router."""

from router._proto.switchboard.v1.resources_pb2 import (
    Activity,
    Channel,
    Offer,
    ParticipantRole,
    Queue,
    RoutingPolicy,
    Task,
    TransferMode,
    TransferStatus,
    TransferTarget,
    Worker,
)
from router._proto.switchboard.v1.timeline_service_pb2 import (
    CustomerContext,
    GetTimelineRequest,
    GetTimelineResponse,
    TimelineEntry,
)
from workers._admin import AdminClient, StateDigest, UpsertedPolicy, UpsertedQueue
from workers._credentials import TlsSettings, TokenSource
from workers._errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    SwitchboardError,
    Unauthenticated,
    Unavailable,
)
from workers._notices import TaskNotice
from workers._session import AgentSession
from workers._tasks import CreatedTask, TaskClient
from workers._timeline import TimelineCalls

__all__ = [
    "Activity",
    "AdminClient",
    "AgentSession",
    "AlreadyExists",
    "Channel",
    "CreatedTask",
    "CustomerContext",
    "FailedPrecondition",
    "GetTimelineRequest",
    "GetTimelineResponse",
    "InvalidArgument",
    "NotFound",
    "Offer",
    "ParticipantRole",
    "PermissionDenied",
    "Queue",
    "ResourceExhausted",
    "RoutingPolicy",
    "StateDigest",
    "SwitchboardError",
    "Task",
    "TaskClient",
    "TaskNotice",
    "TimelineCalls",
    "TimelineEntry",
    "TlsSettings",
    "TokenSource",
    "TransferMode",
    "TransferStatus",
    "TransferTarget",
    "Unauthenticated",
    "Unavailable",
    "UpsertedPolicy",
    "UpsertedQueue",
    "Worker",
]
