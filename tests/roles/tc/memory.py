"""An in-memory network for TLS tests: endpoints joined by ``iosim`` pumps, one Clock.

Servers listen on a (host, port) name; a client endpoint connects to it synchronously and
every connection's bytes move when :meth:`MemoryNetwork.flush` is called. TLS is real
(pyOpenSSL through ``TLSMemoryBIOFactory``), only the sockets are fake. The Clock drives
TLS write buffering and every timer, and starts at the real current time so that OpenSSL
(which reads the real clock) and the TC (which reads the Clock) agree on validity.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.task import Clock
from twisted.test.iosim import IOPump, connect, makeFakeClient, makeFakeServer
from zope.interface import implementer  # type: ignore[import-untyped]


def real_time_clock() -> Clock:
    """A Clock set to the real current time."""
    clock = Clock()
    clock.advance(time.time())
    return clock


@implementer(IListeningPort)
@dataclass
class _Port:
    network: MemoryNetwork
    name: tuple[str, int]

    def startListening(self) -> None:
        pass

    def stopListening(self) -> Deferred[None]:
        self.network.servers.pop(self.name, None)
        return succeed(None)

    def getHost(self) -> object:
        return self.name


@implementer(IStreamServerEndpoint)
@dataclass
class _ServerEndpoint:
    network: MemoryNetwork
    name: tuple[str, int]

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        self.network.servers[self.name] = factory
        return succeed(cast(IListeningPort, _Port(self.network, self.name)))


@implementer(IStreamClientEndpoint)
@dataclass
class _ClientEndpoint:
    network: MemoryNetwork
    name: tuple[str, int]

    def connect(self, factory: Any) -> Deferred[IProtocol]:
        server_factory: Any = self.network.servers.get(self.name)
        if server_factory is None or self.name in self.network.down:
            return fail(ConnectionRefusedError(f"nothing listens on {self.name}"))
        client = factory.buildProtocol(None)
        server = server_factory.buildProtocol(None)
        pump = connect(
            server,
            makeFakeServer(server),
            client,
            makeFakeClient(client),
            greet=False,
            clock=self.network.clock,
        )
        self.network.pumps.append(pump)
        return succeed(cast(IProtocol, client))


@dataclass
class MemoryNetwork:
    """Named servers, client endpoints to them, and the pumps of every connection."""

    clock: Clock = field(default_factory=real_time_clock)
    servers: dict[tuple[str, int], IProtocolFactory] = field(default_factory=dict)
    pumps: list[IOPump] = field(default_factory=list)
    down: set[tuple[str, int]] = field(default_factory=set)

    def server_endpoint(self, host: str, port: int) -> IStreamServerEndpoint:
        """An endpoint that listens on the name (host, port)."""
        return cast(IStreamServerEndpoint, _ServerEndpoint(self, (host, port)))

    def endpoint(self, host: str, port: int) -> IStreamClientEndpoint:
        """An endpoint that connects to whatever listens on (host, port)."""
        return cast(IStreamClientEndpoint, _ClientEndpoint(self, (host, port)))

    def flush(self, rounds: int = 200) -> None:
        """Move bytes and run due calls until nothing moves any more."""
        for _ in range(rounds):
            self.clock.advance(0)
            moved = False
            for pump in list(self.pumps):
                moved = pump.pump() or moved
            due = [c for c in self.clock.getDelayedCalls() if c.getTime() <= self.clock.seconds()]  # type: ignore[misc]
            if not moved and not due:
                return
        raise AssertionError("the memory network never went quiet")
