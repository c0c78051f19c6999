"""Switchboard's router: the pure core, the single writer, the store, the gRPC API.

gRPC's fork handlers must be off before `grpc` is first imported: the router forks copy-on-write
children to take snapshots and digests off its loop (`router.store.forked`), and with the
handlers on, gRPC 1.85 crashes those children (SIGSEGV) and cancels the parent's calls. So this
package sets `GRPC_ENABLE_FORK_SUPPORT=false` as it is imported, and records whether that came
in time (see `router.store.forked.fork_is_safe`): import `router` before `grpc`."""

import os as _os
import sys as _sys

_GRPC_FORK_ENV = "GRPC_ENABLE_FORK_SUPPORT"
_GRPC_IMPORTED_FIRST = "grpc._cython.cygrpc" in _sys.modules
if not _GRPC_IMPORTED_FIRST:
    _os.environ.setdefault(_GRPC_FORK_ENV, "false")
GRPC_FORK_HANDLERS_OFF = _os.environ.get(_GRPC_FORK_ENV, "").strip().lower() in {"0", "false"}
"""Whether gRPC's fork handlers are off in this process (set before gRPC was imported)."""
