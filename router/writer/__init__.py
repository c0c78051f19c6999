"""The single writer's parts, each with one job, joined by `router.service.RouterService`:

- `batches`: the writer itself: takes the commands waiting in a loop turn as one batch, applies
  it (`router.core.replay`), journals it, and only then answers the callers;
- `leadership`: the lease; leading, following the journal as a standby, stepping down;
  recovery, and writing the state back over a store that came back behind;
- `fanout`: a batch's events to the agent streams they concern, and to the event metrics;
- `housekeeping`: what keeps the writer fit: snapshots and digests on a forked copy, the heap's
  freeze, the state metrics.

They depend on the store's protocols (`router.store.protocols`), never on Redis."""
