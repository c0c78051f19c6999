"""AdminClient: what an operator's tooling needs to configure a router (AdminService)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import grpc

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import admin_service_pb2_grpc as agrpc
from router._proto.switchboard.v1 import resources_pb2 as pb
from workers._client import (
    DEFAULT_ATTEMPTS_MAX,
    DEFAULT_CALL_TIMEOUT_S,
    DEFAULT_RETRY_BACKOFF_S,
    RouterClient,
)
from workers._credentials import TlsSettings, TokenSource


class _Page(Protocol):
    @property
    def next_page_token(self) -> str: ...


PageT = TypeVar("PageT", bound=_Page)


@dataclass(frozen=True, slots=True)
class UpsertedQueue:
    """The answer to `AdminClient.upsert_queue`."""

    queue: pb.Queue
    """The queue as the router holds it (defaults filled in)."""
    created: bool
    """True when no queue of this id existed before."""


REWRAP_TIMEOUT_S = 600.0
"""How long `rewrap_customer_keys` waits: a pass rewraps about 15,000 data keys a second (the
embedded Redis, fsyncing every write), so 600 s covers millions of customers."""


@dataclass(frozen=True, slots=True)
class UpsertedPolicy:
    """The answer to `AdminClient.upsert_routing_policy`."""

    policy: pb.RoutingPolicy
    """The routing policy as the router holds it."""
    created: bool
    """True when no policy of this id existed before."""


@dataclass(frozen=True, slots=True)
class StateDigest:
    """The answer to `AdminClient.get_state_digest`: a digest of the router's state, to compare
    a standby with its leader."""

    digest: str
    tasks: int
    workers: int
    journaled_batches: int


class AdminClient(RouterClient[agrpc.AdminServiceStub]):
    """An asyncio client of AdminService: channels, activities, queues and routing policies.
    Use it as `async with AdminClient(addresses) as admin:`.

    Give it every router's address: on UNAVAILABLE it moves on to the leader a standby names,
    or to the next address. Upserts, gets and lists are retried on UNAVAILABLE with exponential
    back-off (an upsert sets the whole object, so repeating it after a lost reply changes
    nothing, though `created` is then False); deletes are not retried (a retry after a lost
    reply would be refused with NOT_FOUND). Every refusal raises a `SwitchboardError`.
    """

    def __init__(
        self,
        address: str | Sequence[str],
        *,
        retry_backoff_s: tuple[float, float] = DEFAULT_RETRY_BACKOFF_S,
        attempts_max: int = DEFAULT_ATTEMPTS_MAX,
        call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        token: TokenSource | None = None,
        tls: TlsSettings | None = None,
    ) -> None:
        super().__init__(
            address,
            agrpc.AdminServiceStub,
            retry_backoff_s=retry_backoff_s,
            attempts_max=attempts_max,
            call_timeout_s=call_timeout_s,
            interceptors=interceptors,
            token=token,
            tls=tls,
        )

    # -- channels and activities ----------------------------------------------------------------

    async def upsert_channel(
        self,
        channel_id: str,
        display_name: str = "",
        *,
        requeue_after_disconnect_s: float | None = None,
    ) -> pb.Channel:
        """Creates or renames a channel (voice, chat and the other built-in ones exist).
        `requeue_after_disconnect_s`: re-queue a lost agent's assigned tasks of this channel
        after this long (0: never; None: keep the channel's setting)."""
        channel = pb.Channel(channel_id=channel_id, display_name=display_name)
        if requeue_after_disconnect_s is not None:
            channel.requeue_after_disconnect_s = requeue_after_disconnect_s
        request = apb.UpsertChannelRequest(channel=channel)
        response = await self._retrying(
            lambda: self._stub().UpsertChannel(request, timeout=self._call_timeout_s)
        )
        return response.channel

    async def upsert_presence_settings(self, settings: pb.PresenceSettings) -> pb.PresenceSettings:
        """Replaces the workspace's presence settings (unset fields: defaults); returns them
        as applied."""
        request = apb.UpsertPresenceSettingsRequest(settings=settings)
        response = await self._retrying(
            lambda: self._stub().UpsertPresenceSettings(request, timeout=self._call_timeout_s)
        )
        return response.settings

    async def get_presence_settings(self) -> pb.PresenceSettings:
        request = apb.GetPresenceSettingsRequest()
        response = await self._retrying(
            lambda: self._stub().GetPresenceSettings(request, timeout=self._call_timeout_s)
        )
        return response.settings

    async def list_channels(self) -> list[pb.Channel]:
        """Every channel of the workspace."""
        response = await self._retrying(
            lambda: self._stub().ListChannels(
                apb.ListChannelsRequest(), timeout=self._call_timeout_s
            )
        )
        return list(response.channels)

    async def upsert_activity(self, activity_id: str, *, available: bool) -> pb.Activity:
        """Creates or changes an activity (e.g. "training", not available for offers)."""
        request = apb.UpsertActivityRequest(
            activity=pb.Activity(activity_id=activity_id, available=available)
        )
        response = await self._retrying(
            lambda: self._stub().UpsertActivity(request, timeout=self._call_timeout_s)
        )
        return response.activity

    async def list_activities(self) -> list[pb.Activity]:
        """Every activity of the workspace, with whether it makes a worker available."""
        response = await self._retrying(
            lambda: self._stub().ListActivities(
                apb.ListActivitiesRequest(), timeout=self._call_timeout_s
            )
        )
        return list(response.activities)

    # -- queues ------------------------------------------------------------------------------------

    async def upsert_queue(self, queue: pb.Queue) -> UpsertedQueue:
        """Creates `queue`, or replaces the queue of its id (its waiting tasks stay)."""
        request = apb.UpsertQueueRequest(queue=queue)
        response = await self._retrying(
            lambda: self._stub().UpsertQueue(request, timeout=self._call_timeout_s)
        )
        return UpsertedQueue(queue=response.queue, created=response.created)

    async def get_queue(self, queue_id: str) -> pb.Queue:
        """The queue of this id (NotFound when there is none)."""
        request = apb.GetQueueRequest(queue_id=queue_id)
        response = await self._retrying(
            lambda: self._stub().GetQueue(request, timeout=self._call_timeout_s)
        )
        return response.queue

    async def list_queues(self, *, page_size: int = 0) -> list[pb.Queue]:
        """Every queue, in id order (read page by page: `page_size` 0 is the router's
        default)."""
        pages = self._pages(
            lambda token: self._stub().ListQueues(
                apb.ListQueuesRequest(page_size=page_size, page_token=token),
                timeout=self._call_timeout_s,
            )
        )
        return [queue async for page in pages for queue in page.queues]

    async def delete_queue(self, queue_id: str) -> None:
        """Deletes a queue (FailedPrecondition while tasks or policies use it)."""
        request = apb.DeleteQueueRequest(queue_id=queue_id)
        await self._once(self._stub().DeleteQueue(request, timeout=self._call_timeout_s))

    # -- routing policies ----------------------------------------------------------------------

    async def upsert_routing_policy(self, policy: pb.RoutingPolicy) -> UpsertedPolicy:
        """Creates `policy`, or replaces the policy of its id (its waiting tasks are routed
        again)."""
        request = apb.UpsertRoutingPolicyRequest(policy=policy)
        response = await self._retrying(
            lambda: self._stub().UpsertRoutingPolicy(request, timeout=self._call_timeout_s)
        )
        return UpsertedPolicy(policy=response.policy, created=response.created)

    async def get_routing_policy(self, policy_id: str) -> pb.RoutingPolicy:
        """The routing policy of this id (NotFound when there is none)."""
        request = apb.GetRoutingPolicyRequest(policy_id=policy_id)
        response = await self._retrying(
            lambda: self._stub().GetRoutingPolicy(request, timeout=self._call_timeout_s)
        )
        return response.policy

    async def list_routing_policies(self, *, page_size: int = 0) -> list[pb.RoutingPolicy]:
        """Every routing policy, in id order (read page by page)."""
        pages = self._pages(
            lambda token: self._stub().ListRoutingPolicies(
                apb.ListRoutingPoliciesRequest(page_size=page_size, page_token=token),
                timeout=self._call_timeout_s,
            )
        )
        return [policy async for page in pages for policy in page.policies]

    async def delete_routing_policy(self, policy_id: str) -> None:
        """Deletes a routing policy (FailedPrecondition while open tasks follow it)."""
        request = apb.DeleteRoutingPolicyRequest(policy_id=policy_id)
        await self._once(self._stub().DeleteRoutingPolicy(request, timeout=self._call_timeout_s))

    # -- operations ----------------------------------------------------------------------------

    async def get_state_digest(self) -> StateDigest:
        """A digest of the router's state (a standby answers too: compare it with its
        leader's)."""
        response = await self._once(
            self._stub().GetStateDigest(apb.GetStateDigestRequest(), timeout=self._call_timeout_s)
        )
        return StateDigest(
            digest=response.digest,
            tasks=response.tasks,
            workers=response.workers,
            journaled_batches=response.journaled_batches,
        )

    async def rewrap_customer_keys(
        self, *, timeout_s: float = REWRAP_TIMEOUT_S
    ) -> apb.RewrapCustomerKeysResponse:
        """Rewraps every customer data key an older key-encryption key wraps with the active
        one, after a keyring rotation (README, Privacy); the reply counts the data keys per key
        id. Retried on UNAVAILABLE: a second pass changes nothing the first did."""
        request = apb.RewrapCustomerKeysRequest()
        return await self._retrying(
            lambda: self._stub().RewrapCustomerKeys(request, timeout=timeout_s)
        )

    async def _pages(self, call: Callable[[str], Awaitable[PageT]]) -> AsyncIterator[PageT]:
        """Every page of a listing, each fetched with retries, following its page tokens."""
        token = ""
        while True:
            page = await self._retrying(functools.partial(call, token))
            yield page
            token = page.next_page_token
            if not token:
                return
