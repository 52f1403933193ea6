"""The local control socket: ``mvpn status`` asks a running process what its roles hold.

A UNIX stream socket (path from the configuration, mode 0600: only the operator's account
may read bindings and counters) speaking line-delimited JSON. A request is one line::

    {"command": "status"}

and the answer one line::

    {"ok": true, "roles": [{"role": "ha", "name": "ha", "status": {...}, "counters": {...}}]}

``{"command": "move", "role": "mn:alice", "to": "192.0.2.9"}`` tells a hosted mobile node to
leave its foreign agent for the one at ``to`` (any other when ``to`` is absent; draft 3.3);
``role`` may be left out when the process hosts exactly one mobile node.

``status`` is the role's own report (an HA's bindings, an FA's visitors, an MN's state) and
``counters`` the merged counters of its core and shell. An unknown command or a line that is
not JSON gets ``{"ok": false, "error": "..."}``. Nothing secret is ever in a status: the
cores report key ages, never keys.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorUNIX
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

MAX_REQUEST = 4096
"""Longest request line: a command name and a few arguments."""

SOCKET_MODE = 0o600
"""Only the account running the daemon may ask (bindings name every mobile node)."""


@dataclass(frozen=True)
class RoleReport:
    """What one hosted role contributes to a status answer."""

    role: str
    name: str
    status: Callable[[], Mapping[str, object]]
    counters: Callable[[], Mapping[str, int]]
    move: Callable[[str | None], None] | None = None
    """A mobile node's ``move_to`` (the ``move`` command); ``None`` for agents."""


def _jsonable(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        # Status values are never keys; bytes here are identifiers (nonces, IDs).
        return value.hex()
    return str(value)


def status_document(reports: Sequence[RoleReport]) -> dict[str, object]:
    """The JSON-ready status answer for ``reports``."""
    roles = []
    for report in reports:
        roles.append(
            {
                "role": report.role,
                "name": report.name,
                "status": _jsonable(report.status()),
                "counters": dict(sorted(report.counters().items())),
            }
        )
    return {"ok": True, "roles": roles}


class ControlProtocol(LineOnlyReceiver):
    """One operator connection: a JSON request per line, a JSON answer per line."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_REQUEST
    log = Logger()

    def __init__(self, reports: Callable[[], Sequence[RoleReport]]) -> None:
        self._reports = reports

    def lineReceived(self, line: bytes) -> None:
        try:
            request = json.loads(line)
            command = request.get("command") if isinstance(request, dict) else None
        except ValueError:
            self._answer({"ok": False, "error": "the request is not JSON"})
            return
        if command == "move":
            self._move(request)
            return
        if command == "status":
            try:
                self._answer(status_document(self._reports()))
            except Exception:
                self.log.failure("status report failed")
                self._answer({"ok": False, "error": "internal error (see the daemon's log)"})
            return
        self._answer(
            {"ok": False, "error": f"unknown command {command!r}; try 'status' or 'move'"}
        )

    def _move(self, request: Mapping[str, object]) -> None:
        wanted, to = request.get("role"), request.get("to")
        movable = [r for r in self._reports() if r.move is not None]
        chosen = [r for r in movable if wanted is None or r.name == wanted]
        if len(chosen) != 1:
            names = [r.name for r in movable]
            self._answer({"ok": False, "error": f"name one mobile node among {names}"})
            return
        if to is not None and not isinstance(to, str):
            self._answer({"ok": False, "error": "'to' must be an IPv4 address string"})
            return
        move = chosen[0].move
        assert move is not None
        try:
            move(to)
        except ValueError as e:
            self._answer({"ok": False, "error": str(e)})
            return
        self._answer({"ok": True, "moved": chosen[0].name, "to": to})

    def lineLengthExceeded(self, line: bytes) -> None:
        self._answer({"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"})
        cast(Any, self.transport).loseConnection()

    def _answer(self, doc: Mapping[str, object]) -> None:
        self.sendLine(json.dumps(doc, sort_keys=True).encode())


class ControlService(Service):
    """Listens on the control socket while running; a stale socket file is replaced."""

    log = Logger()

    def __init__(self, reactor: IReactorUNIX, path: Path) -> None:
        self._reactor = reactor
        self.path = path
        self._reports: list[RoleReport] = []
        self._port: Any = None  # the IListeningPort while running

    def add(self, report: RoleReport) -> None:
        """Include a role in every answer."""
        self._reports.append(report)

    def reports(self) -> list[RoleReport]:
        """The roles answered for, in the order added."""
        return list(self._reports)

    def startService(self) -> None:
        super().startService()
        _remove_stale(self.path)
        factory = Factory.forProtocol(lambda: ControlProtocol(self.reports))
        self._port = cast(Any, self._reactor).listenUNIX(
            str(self.path), factory, mode=SOCKET_MODE, wantPID=False
        )
        self.log.info("control socket {path} (mvpn status --socket {path})", path=str(self.path))

    def stopService(self) -> object:
        super().stopService()
        port, self._port = self._port, None
        if port is not None:
            return port.stopListening()
        return None


def _remove_stale(path: Path) -> None:
    # A daemon killed with -9 leaves its socket file behind; one nobody answers on is stale.
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            os.unlink(path)
            return
    raise FileExistsError(f"{path}: another process is listening on this control socket")


class ControlError(Exception):
    """The control socket could not be reached or answered with an error."""


def query(
    path: Path, command: str = "status", timeout: float = 5.0, **arguments: object
) -> dict[str, Any]:
    """Ask the daemon listening on ``path`` (blocking; for the ``mvpn`` command)."""
    request = {"command": command, **arguments}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
            s.sendall(json.dumps(request).encode() + b"\n")
            chunks: list[bytes] = []
            while not chunks or not chunks[-1].endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError as e:
            raise ControlError(f"cannot reach the control socket {path}: {e}") from e
    try:
        doc = json.loads(b"".join(chunks))
    except ValueError as e:
        raise ControlError(f"{path}: the answer is not JSON ({e})") from e
    if not isinstance(doc, dict) or not doc.get("ok"):
        error = doc.get("error") if isinstance(doc, dict) else doc
        raise ControlError(f"{path}: {error}")
    return cast(dict[str, Any], doc)


def _cell(value: object, key: str = "") -> str:
    if key.endswith("_id") and isinstance(value, int) and not isinstance(value, bool):
        # Node IDs are 64-bit numbers operators read in hex (mvpn pki show prints them so).
        return f"{value:#x}"
    if isinstance(value, float):
        return f"{value:.1f}"
    if value is None:
        return "-"
    return str(value)


def _table(rows: Sequence[Mapping[str, object]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    cells = [[_cell(row.get(c), c) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    for r in cells:
        lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    return [line.rstrip() for line in lines]


def format_status(doc: Mapping[str, Any]) -> str:
    """A readable report of a status answer: per role, its scalar facts, one table per list
    (bindings, visitors ...) and its counters."""
    out: list[str] = []
    for role in doc.get("roles", []):
        out.append(f"== {role['role'].upper()} {role['name']}")
        status = role.get("status", {})
        for key, value in status.items():
            if isinstance(value, list):
                out.append(f"{key}: {len(value)}")
                if value and all(isinstance(v, Mapping) for v in value):
                    out.extend(_table(value))
                elif value:
                    out.extend(f"  {_cell(v)}" for v in value)
            elif isinstance(value, Mapping):
                out.append(f"{key}:")
                out.extend(f"  {k}: {_cell(v, k)}" for k, v in value.items())
            else:
                out.append(f"{key}: {_cell(value, key)}")
        counters = role.get("counters", {})
        out.append("counters:")
        if counters:
            width = max(len(k) for k in counters)
            out.extend(f"  {k.ljust(width)}  {v}" for k, v in counters.items())
        else:
            out.append("  (none yet)")
        out.append("")
    return "\n".join(out)
