"""``make demo``: the whole MVPN draft played in one process on loopback, without root and
without configuration (issue 6).

``python -m mvpn.demo`` provisions a home and a visited domain in a temporary directory,
runs both Trusted Centres, the HA, two FAs, a mobile node and a correspondent node as
services of one reactor, plays advertisement, first contact, correspondent set-up, data both
ways, re-registration, a move under load with the Key Transfer, and refused attacks, and
prints a timeline and a summary table. :func:`~mvpn.demo.scenario.run_demo` is the same
scenario as a coroutine returning a :class:`~mvpn.demo.scenario.DemoSummary` (the tests
use it).
"""

from mvpn.demo.scenario import (
    DEFAULT_TIMEOUT,
    DemoFailed,
    DemoSummary,
    PhaseFigures,
    Refusal,
    Step,
    Transfer,
    run_demo,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "DemoFailed",
    "DemoSummary",
    "PhaseFigures",
    "Refusal",
    "Step",
    "Transfer",
    "run_demo",
]
