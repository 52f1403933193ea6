"""``python -m mvpn.demo`` (``make demo``): play the demo and print its timeline and summary.

Exit status 0 when every step was verified; 1 with a message naming the failed step (and
the path of a copy of the roles' log) otherwise; 130 when interrupted. The whole run is
bounded by ``--timeout`` seconds. Whatever happens, every role is stopped and the temporary
directory removed before the process exits: Ctrl-C (SIGINT) and SIGTERM stop the reactor,
whose shutdown waits for the demo to clean up.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.logger import globalLogBeginner

from mvpn.demo.report import summary_table
from mvpn.demo.scenario import DEFAULT_TIMEOUT, DemoFailed, DemoSummary, run_demo

CLEANUP_GRACE = 15.0
"""Seconds stopping the roles may take after the timeout before the process gives up on
them (stopping takes milliseconds; this only guards against a hang)."""


def _say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the demo on the global reactor; the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m mvpn.demo",
        description="MVPN on loopback in one process: every role, the whole draft, verified.",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"give up after this many seconds (default {DEFAULT_TIMEOUT:.0f})",
    )
    args = parser.parse_args(argv)

    from twisted.internet import reactor as global_reactor

    reactor: Any = global_reactor
    # The roles log to the demo's file only: start the global log with no screen observer.
    globalLogBeginner.beginLoggingTo([], redirectStandardIO=False)
    outcome: dict[str, object] = {}
    playing: list[Deferred[None]] = []

    async def play() -> None:
        _say(
            "mvpn demo: two domains, every role in this process on 127.0.10.0/24 "
            "(elapsed, who, step, time the step took)"
        )
        try:
            summary = await run_demo(reactor, out=_say, timeout=args.timeout)
        except DemoFailed as failure:
            outcome["failed"] = failure
        except CancelledError:
            outcome["interrupted"] = True
        except Exception as e:
            outcome["failed"] = DemoFailed("demo", f"{type(e).__name__}: {e}")
        else:
            outcome["summary"] = summary

    def start() -> None:
        d = ensureDeferred(play())
        playing.append(d)
        d.addBoth(lambda _: reactor.stop() if reactor.running else None)

    def stuck() -> None:
        # The timeout cancelled the demo but stopping the roles never finished: the last
        # resort, so that the demo can never hang.
        outcome["stuck"] = True
        reactor.stop()

    def interrupted() -> Deferred[None] | None:
        # Shutdown started (Ctrl-C, SIGTERM) while the demo still runs: cancel it and let
        # the shutdown wait until it has stopped every role and removed its directory.
        if not playing or playing[0].called or outcome.get("stuck"):
            return None
        outcome["interrupted"] = True
        done: Deferred[None] = Deferred()
        playing[0].addBoth(lambda _: done.callback(None))
        playing[0].cancel()
        return done

    reactor.addSystemEventTrigger("before", "shutdown", interrupted)
    reactor.callWhenRunning(start)
    reactor.callLater(args.timeout + CLEANUP_GRACE, stuck)
    reactor.run()

    if outcome.get("stuck"):
        print(
            f"mvpn demo FAILED: still stopping the roles {CLEANUP_GRACE:.0f} s after the "
            "timeout; gave up",
            file=sys.stderr,
        )
        return 1

    failure = outcome.get("failed")
    if outcome.get("interrupted"):
        print("mvpn demo: interrupted; every role stopped, nothing left behind", file=sys.stderr)
        return 130
    if isinstance(failure, DemoFailed):
        print(f"mvpn demo FAILED at step [{failure.step}]: {failure.reason}", file=sys.stderr)
        if failure.log is not None:
            print(f"the roles' log: {failure.log}", file=sys.stderr)
        return 1
    summary = outcome.get("summary")
    if not isinstance(summary, DemoSummary):
        print("mvpn demo FAILED: no result", file=sys.stderr)
        return 1
    for line in summary_table(summary):
        _say(line)
    return 0 if summary.verified else 1


if __name__ == "__main__":
    sys.exit(main())
