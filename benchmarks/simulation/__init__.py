"""The routing-quality simulation: a seeded contact center (`center`), what happens on a contact
given who takes it (`outcomes`), the routers compared (`routers`: the real core and the
documented baselines), the discrete-event loop in virtual time (`des`), summaries with confidence
intervals (`metrics`), and the queueing theory it is checked against (`erlang`).
`python -m benchmarks.simulate` runs it all."""
