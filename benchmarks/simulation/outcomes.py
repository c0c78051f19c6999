"""What happens on a contact, given who takes it and how long the customer waited.

The model (documented in benchmarks/README.md, with its reasons):
- Handle time: the contact's work x (1.3 - 0.1 x level): an expert (5) is 20% faster than an
  average agent (3), a novice (1) 20% slower. Experience shortens calls in every workforce study;
  the size of the effect is an assumption.
- Resolution: chance 0.5 + 0.09 x level (0.59 for a novice, 0.95 for an expert), less
  UPSET_RESOLVE_PENALTY x upset x (1 - empathy): an upset customer whom the agent does not calm
  down more often refuses the fix or hangs up unresolved.
- Satisfaction, 1 to 5: 1.5, + 2.5 when resolved, + up to 1 for a short wait (falling linearly
  to 0 at WAIT_TOLERANCE_S), - UPSET_SATISFACTION_PENALTY x upset x (1 - empathy): an upset
  customer served by a low-empathy agent is far less satisfied, resolved or not. Clipped to 1-5.

Every policy meets the same model and the same random draws; the routers see only what a front
end would tell them (the need and the sentiment), never the draws."""

from __future__ import annotations

from typing import Final

from benchmarks.simulation.center import Agent, Contact

RESOLVE_BASE: Final = 0.5
RESOLVE_PER_LEVEL: Final = 0.09
UPSET_RESOLVE_PENALTY: Final = 0.35
UPSET_SATISFACTION_PENALTY: Final = 2.0
WAIT_TOLERANCE_S: Final = 120.0
SATISFACTION_MIN: Final = 1.0
SATISFACTION_MAX: Final = 5.0


def handle_ms(contact: Contact, agent: Agent) -> int:
    """How long the agent takes over the contact."""
    level = agent.levels[contact.need]
    return max(1, round(contact.work_s * (1.3 - 0.1 * level) * 1000))


def resolve_chance(contact: Contact, agent: Agent) -> float:
    level = agent.levels[contact.need]
    return (
        RESOLVE_BASE
        + RESOLVE_PER_LEVEL * level
        - UPSET_RESOLVE_PENALTY * contact.upset * (1.0 - agent.empathy)
    )


def satisfaction(contact: Contact, agent: Agent, resolved: bool, wait_ms: int) -> float:
    """The customer's rating, 1 to 5."""
    quick_answer = max(0.0, 1.0 - wait_ms / 1000 / WAIT_TOLERANCE_S)
    score = (
        1.5
        + 2.5 * resolved
        + quick_answer
        - UPSET_SATISFACTION_PENALTY * contact.upset * (1.0 - agent.empathy)
    )
    return min(SATISFACTION_MAX, max(SATISFACTION_MIN, score))
