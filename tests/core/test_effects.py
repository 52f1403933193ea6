"""The effects vocabulary: frozen values, comparable, with counters (mvpn/core/effects.py)."""

from __future__ import annotations

import dataclasses

import pytest

from mvpn.core.effects import (
    CancelTimer,
    Channel,
    Counters,
    Effect,
    Event,
    Log,
    Lookup,
    Send,
    StartTimer,
    debug,
    info,
    warn,
)


def test_send_is_frozen_and_compares_by_value() -> None:
    """Two Sends of the same bytes to the same place are equal; a Send cannot be changed."""
    a = Send(b"\x01", ("127.0.0.1", 434), Channel.REGISTRATION)
    assert a == Send(b"\x01", ("127.0.0.1", 434), Channel.REGISTRATION)
    assert a != Send(b"\x01", ("127.0.0.1", 434), Channel.CONTROL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.data = b"\x02"  # type: ignore[misc]


def test_lookup_and_timer_callbacks_are_called_with_their_argument() -> None:
    """Lookup.then and StartTimer.fire return the effects the shell must perform next."""
    seen: list[object] = []

    def then(result: object) -> list[Effect]:
        seen.append(result)
        return [CancelTimer("t")]

    def fire(now: float) -> list[Effect]:
        seen.append(now)
        return [Event("fired")]

    lookup = Lookup(7, then)
    timer = StartTimer("t", 1.5, fire)
    assert lookup.then(ValueError("x"))[0] == CancelTimer("t")
    assert timer.fire(12.0) == [Event("fired")]
    assert isinstance(seen[0], ValueError)
    assert seen[1] == 12.0
    # The callback takes no part in equality: a timer is named, not identified by closure.
    assert StartTimer("t", 1.5, fire) == StartTimer("t", 1.5, lambda now: [])


def test_log_fields_are_read_only_and_render() -> None:
    """A Log's fields cannot change after the fact and render through the PEP 3101 format."""
    fields = {"home_address": "10.0.0.5", "code": 133}
    log = warn("denied {home_address}: {code}", **fields)
    fields["code"] = 0
    assert log.level == "warn"
    assert log.render() == "denied 10.0.0.5: 133"
    with pytest.raises(TypeError):
        log.fields["code"] = 1  # type: ignore[index]
    assert info("x").level == "info"
    assert debug("x").level == "debug"
    assert Log("error", "{reason}", {"reason": "r"}).render() == "r"


def test_event_fields_are_read_only() -> None:
    """An Event keeps a copy of its fields."""
    fields: dict[str, object] = {"care_of": "192.0.2.1"}
    event = Event("registered", fields)
    fields["care_of"] = "x"
    assert event.fields == {"care_of": "192.0.2.1"}


def test_counters_count_and_snapshot() -> None:
    """Counters start at zero, add by one or more, and snapshot a sorted copy."""
    counters = Counters()
    assert counters.get("accepted") == 0
    counters.increment("denied.133")
    counters.increment("accepted")
    counters.increment("accepted", 2)
    snap = counters.snapshot()
    assert snap == {"accepted": 3, "denied.133": 1}
    assert list(snap) == ["accepted", "denied.133"]
    snap["accepted"] = 0
    assert counters.get("accepted") == 3
