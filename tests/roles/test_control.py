"""The status control socket (mvpn.roles.control) and ``mvpn status``: a real UNIX socket
served by the reactor, asked from a thread as the command line would."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet import reactor as _reactor
from twisted.internet.threads import deferToThread

from mvpn import cli
from mvpn.roles.control import (
    ControlError,
    ControlService,
    RoleReport,
    format_status,
    query,
    status_document,
)

reactor: Any = _reactor


def ha_report() -> RoleReport:
    return RoleReport(
        "ha",
        "ha",
        lambda: {
            "ha_address": "127.0.0.1",
            "node_id": 0x259633C6A0EAED3F,
            "bindings": [
                {"home_address": "10.1.0.5", "care_of": "127.0.0.2", "lifetime_left": 250.25},
            ],
        },
        lambda: {"accepted": 2, "denied.133": 1},
    )


def test_status_document_is_json_ready() -> None:
    """Status values that are not JSON types (addresses, bytes, tuples) are turned into
    strings, hex and lists, so every answer serialises."""
    import ipaddress

    doc = status_document(
        [
            RoleReport(
                "mn",
                "mn:alice",
                lambda: {"addr": ipaddress.IPv4Address("10.0.0.1"), "n": b"\x01\x02", "t": (1, 2)},
                lambda: {},
            )
        ]
    )
    assert json.loads(json.dumps(doc))["roles"][0]["status"] == {
        "addr": "10.0.0.1",
        "n": "0102",
        "t": [1, 2],
    }


def test_format_status_tables() -> None:
    """The readable report names each role, prints lists of records as a table with a
    header, scalars as 'key: value', and every counter."""
    text = format_status(status_document([ha_report()]))
    lines = text.splitlines()
    assert lines[0] == "== HA ha"
    assert "ha_address: 127.0.0.1" in lines
    assert "node_id: 0x259633c6a0eaed3f" in lines
    assert "bindings: 1" in lines
    header = next(line for line in lines if "home_address" in line)
    assert header.split() == ["home_address", "care_of", "lifetime_left"]
    assert lines[lines.index(header) + 1].split() == ["10.1.0.5", "127.0.0.2", "250.2"]
    assert any(line.split() == ["denied.133", "1"] for line in lines)


@pytest.fixture
def control(tmp_path: Path) -> Iterator[ControlService]:
    service = ControlService(reactor, tmp_path / "status.sock")
    service.add(ha_report())
    service.startService()
    yield service
    service.stopService()


@pytest_twisted.inlineCallbacks
def test_query_over_the_socket(control: ControlService) -> Generator[Any, Any, None]:
    """A status request over the socket returns every role's status and counters."""
    doc = yield deferToThread(query, control.path)
    assert doc["ok"] is True
    assert doc["roles"][0]["counters"] == {"accepted": 2, "denied.133": 1}
    assert oct(control.path.stat().st_mode & 0o777) == oct(0o600)


@pytest_twisted.inlineCallbacks
def test_unknown_command_and_garbage(control: ControlService) -> Generator[Any, Any, None]:
    """An unknown command is refused by name; a line that is not JSON gets an error answer
    and the socket still answers the next client."""
    with pytest.raises(ControlError, match="unknown command"):
        yield deferToThread(query, control.path, "reboot")

    def garbage() -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(control.path))
            s.sendall(b"\x00\xffnot json\n")
            return s.recv(1000)

    answer = yield deferToThread(garbage)
    assert json.loads(answer) == {"ok": False, "error": "the request is not JSON"}
    doc = yield deferToThread(query, control.path)
    assert doc["ok"] is True


@pytest_twisted.inlineCallbacks
def test_mvpn_status_command(control: ControlService) -> Generator[Any, Any, None]:
    """``mvpn status --socket PATH`` prints the table; ``--json`` the raw answer; a path
    nobody listens on exits 1."""
    out = io.StringIO()
    code = yield deferToThread(cli.main, ["status", "--socket", str(control.path)], out)
    assert code == 0
    assert "== HA ha" in out.getvalue()
    out = io.StringIO()
    code = yield deferToThread(cli.main, ["status", "--socket", str(control.path), "--json"], out)
    assert code == 0
    assert json.loads(out.getvalue())["roles"][0]["name"] == "ha"
    missing = control.path.parent / "nobody.sock"
    code = yield deferToThread(cli.main, ["status", "--socket", str(missing)], io.StringIO())
    assert code == 1


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    """A socket file left by a killed daemon (nobody listening) is removed at start; a file
    that is not a socket is refused."""
    path = tmp_path / "stale.sock"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(path))
    leftover.close()
    service = ControlService(reactor, path)
    service.startService()
    try:
        assert path.exists()
    finally:
        service.stopService()
    regular = tmp_path / "file"
    regular.write_text("x")
    with pytest.raises(FileExistsError):
        ControlService(reactor, regular).startService()
