"""AdminService: channels, activities, queues and routing policies."""

from __future__ import annotations

import grpc

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import admin_service_pb2_grpc as agrpc
from router._proto.switchboard.v1 import resources_pb2 as pb
from router.api.convert import policy_from_pb, policy_to_pb, queue_from_pb, queue_to_pb
from router.api.paging import PAGE_TOKEN_KEY_PURPOSE, PageTokens, fill_page_by_id
from router.api.status import maps_errors
from router.core import commands as cmd
from router.core.engine import UpsertedPolicy, UpsertedQueue
from router.core.model import PresenceSettings
from router.service import RouterService


class AdminServicer(agrpc.AdminServiceServicer):
    def __init__(self, service: RouterService) -> None:
        self._service = service

    def _page_tokens(self, listing: str) -> PageTokens:
        return PageTokens(self._service.derived_key(PAGE_TOKEN_KEY_PURPOSE), listing)

    @maps_errors
    async def UpsertChannel(
        self, request: apb.UpsertChannelRequest, context: grpc.aio.ServicerContext
    ) -> apb.UpsertChannelResponse:
        channel = request.channel
        requeue_s = (
            channel.requeue_after_disconnect_s
            if channel.HasField("requeue_after_disconnect_s")
            else None
        )
        display_name = await self._service.submit(
            cmd.UpsertChannel(channel.channel_id, channel.display_name, requeue_s)
        )
        return apb.UpsertChannelResponse(channel=self._channel_pb(channel.channel_id, display_name))

    def _channel_pb(self, channel_id: str, display_name: str) -> pb.Channel:
        requeue_s = self._service.engine.presence.requeue_after_disconnect_s.get(channel_id, 0.0)
        return pb.Channel(
            channel_id=channel_id, display_name=display_name, requeue_after_disconnect_s=requeue_s
        )

    @maps_errors
    async def ListChannels(
        self, request: apb.ListChannelsRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListChannelsResponse:
        channels = self._service.engine.channels
        return apb.ListChannelsResponse(
            channels=[
                self._channel_pb(channel_id, display_name)
                for channel_id, display_name in channels.items()
            ]
        )

    @maps_errors
    async def UpsertActivity(
        self, request: apb.UpsertActivityRequest, context: grpc.aio.ServicerContext
    ) -> apb.UpsertActivityResponse:
        activity = request.activity
        await self._service.submit(cmd.UpsertActivity(activity.activity_id, activity.available))
        return apb.UpsertActivityResponse(activity=activity)

    @maps_errors
    async def ListActivities(
        self, request: apb.ListActivitiesRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListActivitiesResponse:
        activities = self._service.engine.activities
        return apb.ListActivitiesResponse(
            activities=[
                pb.Activity(activity_id=name, available=available)
                for name, available in activities.items()
            ]
        )

    @maps_errors
    async def UpsertQueue(
        self, request: apb.UpsertQueueRequest, context: grpc.aio.ServicerContext
    ) -> apb.UpsertQueueResponse:
        upserted: UpsertedQueue = await self._service.submit(
            cmd.UpsertQueue(queue_from_pb(request.queue))
        )
        return apb.UpsertQueueResponse(queue=queue_to_pb(upserted.queue), created=upserted.created)

    @maps_errors
    async def GetQueue(
        self, request: apb.GetQueueRequest, context: grpc.aio.ServicerContext
    ) -> apb.GetQueueResponse:
        queue = self._service.engine.get_queue(request.queue_id)
        return apb.GetQueueResponse(queue=queue_to_pb(queue))

    @maps_errors
    async def ListQueues(
        self, request: apb.ListQueuesRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListQueuesResponse:
        response = apb.ListQueuesResponse()
        response.next_page_token = await fill_page_by_id(
            response.queues, self._service.engine.queues, queue_to_pb,
            requested_size=request.page_size, page_token=request.page_token,
            tokens=self._page_tokens("ListQueues"),
        )  # fmt: skip
        return response

    @maps_errors
    async def GetStateDigest(
        self, request: apb.GetStateDigestRequest, context: grpc.aio.ServicerContext
    ) -> apb.GetStateDigestResponse:
        digest = await self._service.state_digest()  # off the writer's loop
        return apb.GetStateDigestResponse(
            digest=digest.digest,
            tasks=digest.tasks,
            workers=digest.workers,
            journaled_batches=digest.journaled_batches,
        )

    @maps_errors
    async def RewrapCustomerKeys(
        self, request: apb.RewrapCustomerKeysRequest, context: grpc.aio.ServicerContext
    ) -> apb.RewrapCustomerKeysResponse:
        keys = self._service.customer_keys
        done = await keys.rewrap()  # a page of Redis at a time, yielding the loop as it goes
        return apb.RewrapCustomerKeysResponse(
            active_key_id=keys.keyring.active,
            rewrapped=done.rewrapped,
            data_keys_by_key_id=done.by_kek,
            unreadable=done.unreadable,
        )

    @maps_errors
    async def UpsertPresenceSettings(
        self, request: apb.UpsertPresenceSettingsRequest, context: grpc.aio.ServicerContext
    ) -> apb.UpsertPresenceSettingsResponse:
        given, defaults = request.settings, PresenceSettings()
        settings = PresenceSettings(
            presence_timeout_s=(
                given.presence_timeout_s
                if given.HasField("presence_timeout_s")
                else defaults.presence_timeout_s
            ),
            presence_grace_s=(
                given.presence_grace_s
                if given.HasField("presence_grace_s")
                else defaults.presence_grace_s
            ),
            lost_activity=given.lost_activity or defaults.lost_activity,
            missed_offers_max=given.missed_offers_max,
            away_activity=given.away_activity or defaults.away_activity,
        )
        applied = await self._service.submit(cmd.UpsertPresenceSettings(settings))
        return apb.UpsertPresenceSettingsResponse(settings=_settings_pb(applied))

    @maps_errors
    async def GetPresenceSettings(
        self, request: apb.GetPresenceSettingsRequest, context: grpc.aio.ServicerContext
    ) -> apb.GetPresenceSettingsResponse:
        settings = self._service.engine.presence.settings
        return apb.GetPresenceSettingsResponse(settings=_settings_pb(settings))

    @maps_errors
    async def DeleteQueue(
        self, request: apb.DeleteQueueRequest, context: grpc.aio.ServicerContext
    ) -> apb.DeleteQueueResponse:
        await self._service.submit(cmd.DeleteQueue(request.queue_id))
        return apb.DeleteQueueResponse()

    @maps_errors
    async def UpsertRoutingPolicy(
        self, request: apb.UpsertRoutingPolicyRequest, context: grpc.aio.ServicerContext
    ) -> apb.UpsertRoutingPolicyResponse:
        upserted: UpsertedPolicy = await self._service.submit(
            cmd.UpsertRoutingPolicy(policy_from_pb(request.policy))
        )
        return apb.UpsertRoutingPolicyResponse(
            policy=policy_to_pb(upserted.policy), created=upserted.created
        )

    @maps_errors
    async def GetRoutingPolicy(
        self, request: apb.GetRoutingPolicyRequest, context: grpc.aio.ServicerContext
    ) -> apb.GetRoutingPolicyResponse:
        policy = self._service.engine.get_policy(request.policy_id)
        return apb.GetRoutingPolicyResponse(policy=policy_to_pb(policy))

    @maps_errors
    async def ListRoutingPolicies(
        self, request: apb.ListRoutingPoliciesRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListRoutingPoliciesResponse:
        response = apb.ListRoutingPoliciesResponse()
        response.next_page_token = await fill_page_by_id(
            response.policies, self._service.engine.policies, policy_to_pb,
            requested_size=request.page_size, page_token=request.page_token,
            tokens=self._page_tokens("ListRoutingPolicies"),
        )  # fmt: skip
        return response

    @maps_errors
    async def DeleteRoutingPolicy(
        self, request: apb.DeleteRoutingPolicyRequest, context: grpc.aio.ServicerContext
    ) -> apb.DeleteRoutingPolicyResponse:
        await self._service.submit(cmd.DeleteRoutingPolicy(request.policy_id))
        return apb.DeleteRoutingPolicyResponse()


def _settings_pb(settings: PresenceSettings) -> pb.PresenceSettings:
    return pb.PresenceSettings(
        presence_timeout_s=settings.presence_timeout_s,
        presence_grace_s=settings.presence_grace_s,
        lost_activity=settings.lost_activity,
        missed_offers_max=settings.missed_offers_max,
        away_activity=settings.away_activity,
    )
