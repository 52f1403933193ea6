"""The common effect runner of the role shells: performs what the sans-IO core returns.

Every core object (:mod:`mvpn.core`) answers an input with a list of
:mod:`~mvpn.core.effects`. :class:`EffectRunner` performs them in order:

- :class:`~mvpn.core.effects.Send` on the transport registered for its channel (registration
  UDP port, advertisement transport, MVPN control port); a channel the role has no transport
  for (a control port configured as 0) is dropped, logged and counted;
- :class:`~mvpn.core.effects.Lookup` through a :class:`CertificateSource` (local certificate
  files and a cache, then the Trusted Centre client), calling ``then`` when the answer arrives;
- :class:`~mvpn.core.effects.StartTimer` / :class:`~mvpn.core.effects.CancelTimer` with one
  ``IDelayedCall`` per name, all cancelled by :meth:`EffectRunner.stop`;
- :class:`~mvpn.core.effects.Log` as a :mod:`twisted.logger` event with the core's format
  and fields;
- :class:`~mvpn.core.effects.Event` to every subscriber.

An exception out of the core (or out of a subscriber) never kills the service: it is logged
with ``log.failure`` and counted, and the runner goes on with the next input.

The module also holds what every role service shares: loading and checking an agent's
credentials, the :class:`CertificateSource` with its TC client, :class:`TcRegistration`,
:class:`CoreService` (starts the core, cancels its timers on stop) and :class:`RoleService`
(the role's ``MultiService`` and its control-socket report), and :func:`add_control_port`,
the MVPN control port every role opens (UDP 4350, docs/protocol.md 2 and 7.7).
"""

from __future__ import annotations

import datetime
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import (
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
    IStreamClientEndpoint,
)
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

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
)
from mvpn.core.errors import ControlHandler, receive_control
from mvpn.crypto.keys import PrivateKeys
from mvpn.pki.certificate import NodeCertificate, Role
from mvpn.pki.errors import PkiError
from mvpn.pki.files import read_private_keys
from mvpn.pki.tc_errors import UnknownNode
from mvpn.roles.config import AgentFiles, ConfigError, Endpoint
from mvpn.roles.control import RoleReport
from mvpn.roles.tc.client import TrustedCentreClient
from mvpn.roles.tc.tls import client_options
from mvpn.roles.transport import AdvertisementTransport, UdpPortService

DEFAULT_CACHE_TTL = 300.0
"""Seconds a looked-up certificate is reused at most: the Trusted Centre client's own TTL,
so that a revocation is noticed within minutes here too."""

DEFAULT_CACHE_SIZE = 4096
"""Certificates kept (least recently used dropped first): bounded whatever peers send."""

LOG_LEVELS = {"debug": 0, "info": 1, "warn": 2, "error": 3, "critical": 4}
"""The levels a daemon may log at, least severe first."""

_log_threshold = LOG_LEVELS["info"]


def set_log_level(name: str) -> None:
    """Log events of level ``name`` and above (``MVPN_LOG_LEVEL``; ``info`` by default).

    Below it, core log effects and the data plane's per-packet lines are dropped before they
    are formatted: twistd writes every event it is given, and at thousands of
    re-registrations or packets per second the debug lines would cost a quarter of the
    daemon's time (measured at the HA) and fill the disk.

    :raises ValueError: not one of :data:`LOG_LEVELS`.
    """
    global _log_threshold
    if name not in LOG_LEVELS:
        raise ValueError(f"log level {name!r}: one of {', '.join(LOG_LEVELS)}")
    _log_threshold = LOG_LEVELS[name]


def logs(level: str) -> bool:
    """Whether events of ``level`` are logged (see :func:`set_log_level`)."""
    return LOG_LEVELS[level] >= _log_threshold


try:
    set_log_level(os.environ.get("MVPN_LOG_LEVEL", "info").strip().lower() or "info")
except ValueError as _e:
    # twistd buffers events until its log file is open: the warning lands there.
    Logger(namespace="mvpn").warn("MVPN_LOG_LEVEL ignored, logging at info: {why}", why=str(_e))

# Field names twisted.logger's emit() takes for itself; a core field with one of these names
# is renamed rather than allowed to break the call.
_RESERVED_FIELDS = frozenset({"level", "format", "log_format", "log_level", "log_namespace"})


class DelayedCall(Protocol):
    """The part of ``IDelayedCall`` the runner uses (typed structurally: mypy reads zope
    Interface methods as taking no ``self``)."""

    def active(self) -> bool: ...

    def cancel(self) -> None: ...


class Clock(Protocol):
    """The part of ``IReactorTime`` the shells use; the reactor and ``task.Clock`` fit."""

    def seconds(self) -> float: ...

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: object, **kw: object
    ) -> DelayedCall: ...


AnyClock = IReactorTime | Clock
"""What the shells take as their clock: the reactor, or a ``task.Clock`` in tests."""


def as_clock(reactor: AnyClock) -> Clock:
    """``reactor`` seen through :class:`Clock`."""
    return cast(Clock, reactor)


class DatagramSender(Protocol):
    """Anything that can send one datagram: a UDP transport, the advertisement transport."""

    def write(self, data: bytes, addr: tuple[str, int]) -> object: ...


class RemoteLookup(Protocol):
    """The part of :class:`~mvpn.roles.tc.client.TrustedCentreClient` the runner needs."""

    def lookup(self, node_id: int, domain: str | None = None) -> Deferred[NodeCertificate]: ...


def clock_datetime(clock: AnyClock) -> datetime.datetime:
    """The clock's time as an aware UTC datetime (certificate validity checks)."""
    return datetime.datetime.fromtimestamp(as_clock(clock).seconds(), datetime.UTC)


class CertificateSource:
    """Certificates by node ID: local files of the agent's own domain, a cache, then the TC.

    Local certificates (``peer_certificates`` in the configuration) are checked against the
    domain's CA once, at start; the TC client checks what the TC sends itself. Answers are
    kept for ``cache_ttl`` seconds (never past the certificate's ``not_after``).

    Counters: ``lookups`` (asked), ``lookups.local``, ``lookups.cached``, ``tc_requests``
    (handed to the TC client), ``lookups.failed``.
    """

    def __init__(
        self,
        clock: AnyClock,
        remote: RemoteLookup | None = None,
        local: Iterable[NodeCertificate] = (),
        *,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self._clock = as_clock(clock)
        self._remote = remote
        self._local = {cert.node_id: cert for cert in local}
        self._cache_ttl = cache_ttl
        self._cache_size = cache_size
        self._cache: OrderedDict[int, tuple[NodeCertificate, float]] = OrderedDict()
        self.counters = Counters()

    def add_local(self, cert: NodeCertificate) -> None:
        """Make ``cert`` known without any lookup (the agent's own and its configured peers)."""
        self._local[cert.node_id] = cert

    def lookup(self, node_id: int) -> Deferred[NodeCertificate]:
        """The certificate of ``node_id``; fails with :class:`UnknownNode` when nobody has it,
        or with the TC client's typed error."""
        self.counters.increment("lookups")
        now = self._clock.seconds()
        local = self._local.get(node_id)
        if local is not None and local.not_after.timestamp() > now:
            self.counters.increment("lookups.local")
            return succeed(local)
        cached = self._cache.get(node_id)
        if cached is not None:
            cert, expires = cached
            if now < expires:
                self._cache.move_to_end(node_id)
                self.counters.increment("lookups.cached")
                return succeed(cert)
            del self._cache[node_id]
        if self._remote is None:
            self.counters.increment("lookups.failed")
            return fail(UnknownNode(f"no certificate for node {node_id:#x} (no TC configured)"))
        self.counters.increment("tc_requests")
        d = self._remote.lookup(node_id)
        d.addCallbacks(self._store, self._failed)
        return d

    def _store(self, cert: NodeCertificate) -> NodeCertificate:
        expires = min(cert.not_after.timestamp(), self._clock.seconds() + self._cache_ttl)
        self._cache[cert.node_id] = (cert, expires)
        self._cache.move_to_end(cert.node_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return cert

    def _failed(self, failure: Failure) -> Failure:
        self.counters.increment("lookups.failed")
        return failure


def check_local_certificates(
    certs: Iterable[NodeCertificate], cas: Iterable[NodeCertificate], now: datetime.datetime
) -> list[NodeCertificate]:
    """``certs`` after checking each was issued by the CA of its domain among ``cas`` and is
    valid at ``now``.

    :raises ConfigError: the first one that is not (configuration errors stop the start).
    """
    by_domain = {ca.domain: ca for ca in cas}
    checked = []
    for cert in certs:
        ca = by_domain.get(cert.domain)
        if ca is None:
            raise ConfigError(
                f"local certificate {cert.describe()}: no CA certificate of {cert.domain!r} "
                "configured (peer_cas)"
            )
        try:
            cert.verify_issued_by(ca, now)
        except PkiError as e:
            raise ConfigError(f"local certificate {cert.describe()}: {e}") from e
        checked.append(cert)
    return checked


class EffectRunner:
    """Performs core effects with real transports, the reactor's clock and a logger.

    :param reactor: the clock every timer runs on (``callLater``, ``seconds``).
    :param transports: the sender for each :class:`Channel` the role uses; a ``Send`` on a
        channel without one is dropped, logged and counted (``drops.no_transport``).
    :param certificates: where ``Lookup`` goes.
    :param log: the role's logger (its namespace names the role in the log).

    Counters: ``sent.<channel>``, ``drops.no_transport``, ``drops.send_error``,
    ``timers.fired``, ``core_errors``, ``lookups.late`` (answers that arrived after
    :meth:`stop`).
    """

    def __init__(
        self,
        reactor: AnyClock,
        transports: Mapping[Channel, DatagramSender],
        certificates: CertificateSource,
        log: Logger,
    ) -> None:
        self._reactor = as_clock(reactor)
        self._transports = dict(transports)
        self.certificates = certificates
        self.log = log
        self._timers: dict[str, DelayedCall] = {}
        self._subscribers: list[Callable[[Event], None]] = []
        self._stopped = False
        self._held: list[Send] | None = None
        self.counters = Counters()

    # -- wiring -----------------------------------------------------------------------

    def set_transport(self, channel: Channel, sender: DatagramSender | None) -> None:
        """Attach (or, with ``None``, detach) the sender of ``channel``; ports open and
        close with their services, after the runner is made."""
        if sender is None:
            self._transports.pop(channel, None)
        else:
            self._transports[channel] = sender

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` with every :class:`Event`; returns a function that unsubscribes."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def now(self) -> float:
        """The reactor's current time, the ``now`` every core method is given."""
        return self._reactor.seconds()

    # -- running the core -------------------------------------------------------------

    def call(self, method: Callable[..., list[Effect]], *args: object) -> None:
        """Call a core method and perform its effects; a core exception is logged, counted
        and swallowed (the service keeps serving)."""
        try:
            effects = method(*args)
        except Exception:
            self.counters.increment("core_errors")
            self.log.failure(
                "the core failed in {method}; input dropped",
                method=getattr(method, "__qualname__", repr(method)),
            )
            return
        self.run(effects)

    def run(self, effects: Iterable[Effect]) -> None:
        """Perform ``effects`` in order."""
        for effect in effects:
            try:
                self._perform(effect)
            except Exception:
                self.counters.increment("core_errors")
                self.log.failure("could not perform {effect}", effect=type(effect).__name__)

    def hold_sends(self) -> None:
        """Keep every :class:`Send` from now on until :meth:`release_sends` (group commit:
        no reply may leave before the store has committed what it acknowledges)."""
        if self._held is None:
            self._held = []

    def release_sends(self) -> None:
        """Send, in order, what :meth:`hold_sends` kept, and send directly again."""
        held, self._held = self._held or [], None
        self.run(held)

    def discard_held_sends(self) -> int:
        """Drop what :meth:`hold_sends` kept (the commit failed); returns how many."""
        held, self._held = self._held or [], None
        self.counters.increment("drops.uncommitted", len(held))
        return len(held)

    def stop(self) -> None:
        """Cancel every timer; answers of lookups still in flight are dropped."""
        self._stopped = True
        for call in self._timers.values():
            if call.active():
                call.cancel()
        self._timers.clear()

    def start(self) -> None:
        """Accept effects again after :meth:`stop` (a service restarted in place)."""
        self._stopped = False

    def timer_names(self) -> list[str]:
        """Names of the timers now armed (status, tests)."""
        return sorted(name for name, call in self._timers.items() if call.active())

    # -- the effects ------------------------------------------------------------------

    def _perform(self, effect: Effect) -> None:
        if isinstance(effect, Send):
            if self._held is not None:
                self._held.append(effect)
            else:
                self._send(effect)
        elif isinstance(effect, Lookup):
            self._lookup(effect)
        elif isinstance(effect, StartTimer):
            self._start_timer(effect)
        elif isinstance(effect, CancelTimer):
            call = self._timers.pop(effect.name, None)
            if call is not None and call.active():
                call.cancel()
        elif isinstance(effect, Log):
            self._log(effect)
        elif isinstance(effect, Event):
            self._event(effect)
        else:
            raise TypeError(f"not an effect: {effect!r}")

    def _send(self, effect: Send) -> None:
        sender = self._transports.get(effect.channel)
        if sender is None or self._stopped:
            self.counters.increment("drops.no_transport")
            self.log.warn(
                "no open {channel} transport: datagram to {to} dropped",
                channel=effect.channel.value,
                to=f"{effect.to[0]}:{effect.to[1]}",
            )
            return
        try:
            sender.write(effect.data, effect.to)
        except OSError as e:
            # An unreachable peer (ICMP port unreachable on a connected socket, no route) is
            # the network's business, not a reason to stop serving.
            self.counters.increment("drops.send_error")
            self.log.warn(
                "could not send to {to}: {reason}",
                to=f"{effect.to[0]}:{effect.to[1]}",
                reason=str(e),
            )
            return
        self.counters.increment(f"sent.{effect.channel.value}")

    def _lookup(self, effect: Lookup) -> None:
        d = self.certificates.lookup(effect.node_id)

        def answered(result: NodeCertificate | Failure) -> None:
            if self._stopped:
                self.counters.increment("lookups.late")
                return
            answer: NodeCertificate | Exception
            if isinstance(result, Failure):
                value = result.value
                answer = value if isinstance(value, Exception) else RuntimeError(str(value))
            else:
                answer = result
            self.call(effect.then, answer)

        d.addBoth(answered)

    def _start_timer(self, effect: StartTimer) -> None:
        old = self._timers.pop(effect.name, None)
        if old is not None and old.active():
            old.cancel()
        if self._stopped:
            return

        def fire() -> None:
            # Forget the call first: fire() may arm a timer of the same name again.
            if self._timers.get(effect.name) is call:
                del self._timers[effect.name]
            self.counters.increment("timers.fired")
            self.call(effect.fire, self.now())

        call = self._reactor.callLater(max(0.0, effect.delay), fire)
        self._timers[effect.name] = call

    def _log(self, effect: Log) -> None:
        if LOG_LEVELS[effect.level] < _log_threshold:
            return
        fields = {
            (f"field_{key}" if key in _RESERVED_FIELDS else key): value
            for key, value in effect.fields.items()
        }
        log_format = effect.format
        for key in _RESERVED_FIELDS & set(effect.fields):
            log_format = log_format.replace("{" + key, "{field_" + key)
        self.log.emit(LogLevel.levelWithName(effect.level), log_format, **fields)

    def _event(self, effect: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(effect)
            except Exception:
                self.counters.increment("core_errors")
                self.log.failure("an event subscriber failed on {event}", event=effect.name)


# -- what every role service shares -------------------------------------------------------


@dataclass(frozen=True, repr=False)
class AgentCredentials:
    """An agent's CA certificate, own certificate and private keys, loaded and checked."""

    ca: NodeCertificate
    certificate: NodeCertificate
    keys: PrivateKeys

    def __repr__(self) -> str:
        return f"<AgentCredentials {self.certificate.describe()}>"


def load_agent_credentials(files: AgentFiles, role: Role, clock: AnyClock) -> AgentCredentials:
    """Read an agent's files and check them; :class:`ConfigError` saying what is wrong."""
    ca = NodeCertificate.load(files.ca_certificate)
    if not ca.is_ca:
        raise ConfigError(f"{files.ca_certificate}: not a CA certificate")
    cert = NodeCertificate.load(files.certificate)
    try:
        cert.verify_issued_by(ca, clock_datetime(clock))
    except PkiError as e:
        raise ConfigError(f"{files.certificate}: {e}") from e
    if cert.role is not role:
        raise ConfigError(f"{files.certificate}: a {cert.role.name} certificate, not {role.name}")
    keys = read_private_keys(files.private_key)
    if keys.public != cert.public_keys:
        raise ConfigError(f"{files.private_key}: does not match {files.certificate}")
    return AgentCredentials(ca, cert, keys)


def build_certificate_source(
    reactor: AnyClock,
    creds: AgentCredentials,
    tc: Endpoint | None,
    local_paths: Iterable[Path],
    peer_ca_paths: Iterable[Path] = (),
) -> tuple[CertificateSource, TrustedCentreClient | None]:
    """The role's :class:`CertificateSource`: its own certificate and the configured local
    ones (checked against their domains' CAs), then the domain's TC when one is configured.
    Returns the TC client too (a service the role must run)."""
    cas = [creds.ca, *(NodeCertificate.load(p) for p in peer_ca_paths)]
    for ca in cas:
        if not ca.is_ca:
            raise ConfigError(f"{ca.describe()}: not a CA certificate")
    local = check_local_certificates(
        [NodeCertificate.load(p) for p in local_paths], cas, clock_datetime(reactor)
    )
    client = None
    if tc is not None:
        endpoint = TCP4ClientEndpoint(cast(IReactorTCP, reactor), tc.host, tc.port)
        client = TrustedCentreClient(
            cast(IReactorTime, reactor),
            cast(IStreamClientEndpoint, endpoint),
            client_options(creds.certificate, creds.keys, creds.ca),
            creds.ca,
        )
        client.setName("tc")
    source = CertificateSource(reactor, client, [creds.certificate, *local])
    return source, client


class TcRegistration(Service):
    """Registers certificates with the domain's TC once it runs (draft 3.1: every agent's
    public key is known to its TC; an HA also registers its mobile nodes', draft 7.1).

    A failure is logged and counted (``tc_registrations.failed``), never fatal: the TC may
    know the certificates already, or come up later (the next start registers again).
    """

    log = Logger()

    def __init__(self, client: TrustedCentreClient, certificates: Iterable[NodeCertificate]):
        self._client = client
        self._certificates = list(certificates)
        self.counters = Counters()

    def startService(self) -> None:
        super().startService()
        for cert in self._certificates:
            d = self._client.register(cert)
            d.addCallbacks(
                self._registered, self._failed, callbackArgs=(cert,), errbackArgs=(cert,)
            )

    def _registered(self, new: bool, cert: NodeCertificate) -> None:
        self.counters.increment("tc_registrations")
        self.log.info(
            "registered {node} with the Trusted Centre (new: {new})",
            node=cert.describe(),
            new=new,
        )

    def _failed(self, failure: Failure, cert: NodeCertificate) -> None:
        self.counters.increment("tc_registrations.failed")
        self.log.warn(
            "could not register {node} with the Trusted Centre: {reason}",
            node=cert.describe(),
            reason=failure.getErrorMessage(),
        )


class CoreService(Service):
    """Starts a core (performing what its ``start(now)`` returns) and, when stopped, cancels
    every timer the runner holds."""

    def __init__(
        self, runner: EffectRunner, start: Callable[[float], list[Effect]] | None = None
    ) -> None:
        self.runner = runner
        self._start = start

    def startService(self) -> None:
        super().startService()
        self.runner.start()
        if self._start is not None:
            self.runner.call(self._start, self.runner.now())

    def stopService(self) -> None:
        super().stopService()
        self.runner.stop()


CounterSource = Callable[[], Mapping[str, int]]


class RoleService(MultiService):
    """One hosted role: a ``MultiService`` of named children, its core and runner, and what it
    reports to the control socket.

    Counters shown by ``mvpn status`` are the core's own (``accepted``, ``denied.<code>``,
    ``drops.<reason>``, ``pk_operations`` ...) plus the shell's under a prefix
    (``shell.``, ``certificates.``, ``registration_port.``, ``advertisement.``).
    """

    def __init__(
        self,
        role: str,
        name: str,
        runner: EffectRunner,
        status: Callable[[float], Mapping[str, object]],
    ) -> None:
        super().__init__()
        self.role = role
        self.setName(name)
        self.runner = runner
        self._status = status
        self._counter_sources: list[tuple[str, CounterSource]] = []
        self.add_counters("shell.", runner.counters.snapshot)
        self.add_counters("certificates.", runner.certificates.counters.snapshot)

    def add_counters(self, prefix: str, source: CounterSource) -> None:
        """Show ``source``'s counters under ``prefix`` (``""`` for the core's own)."""
        self._counter_sources.append((prefix, source))

    def counters(self) -> dict[str, int]:
        """Every counter of the role, merged."""
        merged: dict[str, int] = {}
        for prefix, source in self._counter_sources:
            for key, value in source().items():
                merged[prefix + key] = value
        return dict(sorted(merged.items()))

    def status(self) -> dict[str, object]:
        """The core's status (without its counters, which :meth:`counters` reports)."""
        status = dict(self._status(self.runner.now()))
        status.pop("counters", None)
        return status

    def report(self) -> RoleReport:
        """This role's entry in a control-socket answer."""
        return RoleReport(self.role, self.name or self.role, self.status, self.counters)

    def add_child(self, name: str, child: Service) -> None:
        """Add ``child`` under ``name`` (children start in the order they are added)."""
        child.setName(name)
        child.setServiceParent(self)

    def add_registration_port(
        self,
        reactor: AnyClock,
        port: int,
        handler: Callable[[bytes, tuple[str, int]], None],
        interface: str,
    ) -> UdpPortService:
        """The registration UDP port (434 by default) as the child ``registration``: opened
        in ``privilegedStartService``, the transport of ``Channel.REGISTRATION`` sends."""
        registration = UdpPortService(
            cast(IReactorUDP, reactor), port, handler, interface=interface, what="registration"
        )
        self.add_child("registration", registration)
        self.add_counters("registration_port.", registration.counters.snapshot)
        self.runner.set_transport(Channel.REGISTRATION, registration)
        return registration

    def add_advertisements(self, transport: AdvertisementTransport) -> None:
        """The advertisement transport as the child ``advertisement`` and the transport of
        ``Channel.ADVERTISEMENT`` sends."""
        self.add_child("advertisement", transport)
        self.add_counters("advertisement.", transport.counters.snapshot)
        self.runner.set_transport(Channel.ADVERTISEMENT, transport)

    def add_tc_registration(
        self, tc_client: TrustedCentreClient, certificates: list[NodeCertificate]
    ) -> None:
        """The TC client, then the registration of ``certificates`` with it at start."""
        tc_client.setServiceParent(self)
        with_tc = TcRegistration(tc_client, certificates)
        self.add_child("tc-registration", with_tc)
        self.add_counters("", with_tc.counters.snapshot)

    def when(self, *names: str) -> Deferred[Event]:
        """A Deferred that fires with the next :class:`Event` called one of ``names``."""
        d: Deferred[Event] = Deferred()

        def check(event: Event) -> None:
            if event.name in names and not d.called:
                unsubscribe()
                d.callback(event)

        unsubscribe = self.runner.subscribe(check)
        return d

    def add_core(self, start: Callable[[float], list[Effect]]) -> None:
        """The child ``core``, added last: it starts the core once every port is open."""
        self.add_child("core", CoreService(self.runner, start))


def add_control_port(
    top: RoleService,
    reactor: AnyClock,
    port: int,
    counters: Counters,
    *,
    interface: str = "",
    handlers: Mapping[int, ControlHandler] | None = None,
) -> UdpPortService | None:
    """Open the role's MVPN control port (docs/protocol.md 2, 7.7) as the child ``control``
    of ``top``: a UDP port opened in ``privilegedStartService`` like the registration port,
    the transport of :attr:`~mvpn.core.effects.Channel.CONTROL` sends (errors leave from it),
    and the source of datagrams for :func:`~mvpn.core.errors.receive_control`, which counts
    into ``counters`` (the core's: ``mvpn_errors.received.<code>``,
    ``control.unexpected``, ``control.malformed``); a Type in ``handlers`` goes to its
    handler instead (the correspondent-node session messages). ``port`` 0 opens nothing.
    """
    if port == 0:
        return None
    runner = top.runner

    def received(data: bytes, source: tuple[str, int]) -> None:
        runner.call(receive_control, data, source, counters, handlers, runner.now())

    control = UdpPortService(
        cast(IReactorUDP, reactor), port, received, interface=interface, what="control"
    )
    control.setName("control")
    control.setServiceParent(top)
    top.add_counters("control_port.", control.counters.snapshot)
    runner.set_transport(Channel.CONTROL, control)
    return control
