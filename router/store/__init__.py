"""Durable state behind the `Journal` and `Lease` protocols (`protocols`, errors in `errors`):
the Redis adapter (`journal`, `lease`, `connect`, the embedded server in `embedded`), the
in-memory implementation (`memory`), the bytes kept (`formats`), recovery, and forked work."""
