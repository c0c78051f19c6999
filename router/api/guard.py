"""The one place access is enforced: a server interceptor that authenticates each call's bearer
token and checks it against `router.api.access.ACCESS`, before the servicer runs.

It wraps the method's handler, so that the check sees the deserialized request (for the Connect
stream, its first message, the hello). Health is always open (probes carry no token); reflection
needs a valid token of any role when authentication is on. A router without authentication
passes every call through unchanged, except configuration changes, which are still audited.

On the path of every call: the wrapped handlers are built once per method, and a token seen
before costs a dictionary look-up (`TokenVerifier` caches it until it expires)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import grpc

from router.api.access import ACCESS, Rule, refusal
from router.api.audit import Audit
from router.api.authn import ANONYMOUS, AuthenticationError, Principal, TokenVerifier
from router.api.handlers import behavior_of, first_request, replaced
from router.service import RouterService

HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIXES = ("/grpc.reflection.v1.", "/grpc.reflection.v1alpha.")

_ADMIN_ONLY = Rule(frozenset())

CALLER: ContextVar[Principal] = ContextVar("switchboard_caller", default=ANONYMOUS)
"""The caller of the call being served, for a servicer whose answer depends on who asks (the
timeline's view): set by the guard before the servicer runs, in the call's own context. A router
without authentication leaves the default, an anonymous admin."""


class AccessGuard(grpc.aio.ServerInterceptor):
    """Authentication (with `verifier`; None: every caller is an anonymous admin, as on a router
    without authentication) and authorization by `ACCESS`, audited."""

    def __init__(
        self, verifier: TokenVerifier | None, audit: Audit, *, first_request_timeout_s: float
    ) -> None:
        """`first_request_timeout_s`: how long a request stream whose first message the guard
        reads (the Connect hello) may stay silent before it is ended (the servicer's own
        deadline starts only once the guard hands the stream on)."""
        self._verifier = verifier
        self._audit = audit
        self._first_request_timeout_s = first_request_timeout_s
        self.service: RouterService | None = None
        """Its engine is the read side the scopes consult (replaced when the state is rebuilt
        from the store); set once the service exists."""
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if method.startswith(HEALTH_PREFIX):
            return handler
        reflection = method.startswith(REFLECTION_PREFIXES)
        if reflection and self._verifier is None:
            return handler
        # A method the table does not name is the admin's (reflection: any valid token).
        rule = None if reflection else ACCESS.get(method, _ADMIN_ONLY)
        if self._verifier is None and (rule is None or not rule.audited):
            return handler
        inner = behavior_of(handler)
        if handler.request_streaming:
            behavior = self._stream_behavior(method, rule, inner, handler.response_streaming)
        else:
            behavior = self._unary_behavior(method, rule, inner, handler.response_streaming)
        return replaced(handler, behavior)

    async def _check(
        self, method: str, rule: Rule | None, request: Any, context: grpc.aio.ServicerContext
    ) -> Principal:
        """The caller, allowed to make this call; else the call ends refused (and audited)."""
        principal = ANONYMOUS
        if self._verifier is not None:
            try:
                principal = self._verifier.principal(context.invocation_metadata())
            except AuthenticationError as error:
                self._audit.refused(
                    method=method, reason=error.reason, message=error.message, principal=None,
                    request=request, peer=context.peer(),
                )  # fmt: skip
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, error.message)
        CALLER.set(principal)
        if rule is None:  # reflection: any valid token
            return principal
        service = self.service
        refused = None if service is None else refusal(rule, principal, request, service.engine)
        if refused is not None:
            reason = "role" if principal.role not in rule.roles else "scope"
            self._audit.refused(
                method=method, reason=reason, message=refused, principal=principal,
                request=request, peer=context.peer(),
            )  # fmt: skip
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refused)
        return principal

    def _unary_behavior(
        self, method: str, rule: Rule | None, inner: Callable[..., Any], response_streaming: bool
    ) -> Callable[..., Any]:
        narrow = rule.narrow if rule is not None else None
        audited = rule is not None and rule.audited
        audit = self._audit
        check = self._check

        if response_streaming:

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                principal = await check(method, rule, request, context)
                async for response in _responses(inner(request, context)):
                    yield response if narrow is None else narrow(principal, response)

            return stream

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            principal = await check(method, rule, request, context)
            if not audited:
                response = await inner(request, context)
                return response if narrow is None else narrow(principal, response)
            outcome = "UNKNOWN"
            try:
                response = await inner(request, context)
                outcome = "OK"
                return response
            except BaseException:
                code = context.code()
                outcome = code.name if isinstance(code, grpc.StatusCode) else "ERROR"
                raise
            finally:
                audit.changed(
                    method=method, principal=principal, request=request, peer=context.peer(),
                    outcome=outcome,
                )  # fmt: skip

        return unary

    def _stream_behavior(
        self, method: str, rule: Rule | None, inner: Callable[..., Any], response_streaming: bool
    ) -> Callable[..., Any]:
        """Checks the first message of a request stream (the Connect hello), then hands the
        whole stream, that message first, to the servicer (which answers with a stream of
        its own, or with one reply)."""
        check = self._check
        peeks = rule is not None and rule.scope is not None
        timeout_s = self._first_request_timeout_s

        async def admitted(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            """The request stream, once the caller may make this call."""
            if not peeks:
                await check(method, rule, None, context)
                return requests
            first = await first_request(aiter(requests), timeout_s, context)
            await check(method, rule, first, context)
            return requests if first is None else _prepend(first, requests)

        if not response_streaming:

            async def unary_reply(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                return await inner(await admitted(requests, context), context)

            return unary_reply

        async def stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            requests = await admitted(requests, context)
            async for response in _responses(inner(requests, context)):
                yield response

        return stream


async def _responses(result: Any) -> AsyncIterator[Any]:
    """A servicer's responses, whether it is an async generator or a coroutine (one that
    writes with `context.write`, or aborts, as the standby's refusal does)."""
    if hasattr(result, "__aiter__"):
        async for response in result:
            yield response
        return
    response = await result
    if response is not None:
        yield response


async def _prepend(first: Any, rest: Any) -> AsyncIterator[Any]:
    yield first
    async for item in rest:
        yield item
