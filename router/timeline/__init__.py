"""The customer timeline (an I/O edge, not the core): its Redis store (`store`), the projector
that folds the event feed into it on the leader (`projector`), and the reads the
TimelineService serves from it (`reads`). Import the modules themselves: this package's
`__init__` stays empty so that `router.service` can import the store without a cycle."""
