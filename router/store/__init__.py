"""Durable state in Redis: the journal of command batches, snapshots, the embedded server."""
