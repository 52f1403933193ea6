"""A sans-IO test world: MN, FA and HA cores joined by an in-memory network and a fake clock.

Effects are performed the way a shell would: :class:`~mvpn.core.effects.Send` is delivered
(after the current handler returns) to the node listening at the destination address,
:class:`~mvpn.core.effects.Lookup` is answered from a certificate directory (counted),
timers live on a task-free clock that :meth:`World.advance` moves. Nothing sleeps and no
socket is opened.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mvpn.core import correspondent as cor
from mvpn.core.effects import (
    Address,
    CancelTimer,
    Channel,
    Effect,
    Event,
    Log,
    Lookup,
    Send,
    StartTimer,
)
from mvpn.core.errors import receive_control
from mvpn.core.fa import ForeignAgent, ForeignAgentConfig
from mvpn.core.ha import HomeAgent, HomeAgentConfig, MobileNodeRecord, PlainNodeRecord
from mvpn.core.messages import AgentIdentity, MobileCredentials
from mvpn.core.mn import MobileNode, MobileNodeConfig
from mvpn.core.store import BindingStore
from mvpn.crypto.dh import DhGroup
from mvpn.crypto.keys import PrivateKeys
from mvpn.crypto.negotiation import LOCAL_FLAGS
from mvpn.crypto.random import SeededRandom
from mvpn.pki.certificate import (
    NodeCertificate,
    Role,
    issue_certificate,
    make_ca_certificate,
)
from mvpn.pki.tc_errors import UnknownNode

NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)
T0 = NOW.timestamp()
"""Unix time of the tests: inside every certificate's validity."""

HA_ADDR = ipaddress.IPv4Address("127.0.0.1")
FA_ADDR = ipaddress.IPv4Address("127.0.0.2")
FA2_ADDR = ipaddress.IPv4Address("127.0.0.3")
MN_LINK = ("127.0.0.10", 4000)
HOME = ipaddress.IPv4Address("10.0.0.5")
PLAIN_HOME = ipaddress.IPv4Address("10.0.0.6")
HA_ID = 0x4841
FA_ID = 0x4641
FA2_ID = 0x4642
USER_ID = 0x4D4E0001
CN_ID = 0x434E
CN_ADDR = ipaddress.IPv4Address("127.0.0.20")
PLAIN_SPI = 0x1000
PLAIN_KEY = bytes(range(16))
ADVERTISE_TO: Address = ("127.255.255.255", 4349)


def keys(seed: str) -> PrivateKeys:
    """Deterministic key pairs for a test node."""
    return PrivateKeys.generate(SeededRandom(seed))


@dataclass
class Pki:
    """A domain CA and the certificates of the test nodes, made at test time."""

    ca_keys: PrivateKeys = field(default_factory=lambda: keys("ca"))
    ha_keys: PrivateKeys = field(default_factory=lambda: keys("ha"))
    fa_keys: PrivateKeys = field(default_factory=lambda: keys("fa"))
    fa2_keys: PrivateKeys = field(default_factory=lambda: keys("fa2"))
    mn_keys: PrivateKeys = field(default_factory=lambda: keys("mn"))
    cn_keys: PrivateKeys = field(default_factory=lambda: keys("cn"))
    certificates: dict[int, NodeCertificate] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ca = make_ca_certificate(
            "corp.example",
            1,
            self.ca_keys,
            NOW - datetime.timedelta(days=1),
            NOW + datetime.timedelta(days=30),
            1,
        )
        for serial, (role, node_id, name, private, address) in enumerate(
            (
                (Role.HA, HA_ID, "ha1", self.ha_keys, HA_ADDR),
                (Role.FA, FA_ID, "fa1", self.fa_keys, FA_ADDR),
                (Role.FA, FA2_ID, "fa2", self.fa2_keys, FA2_ADDR),
                (Role.MN, USER_ID, "mn1", self.mn_keys, HOME),
                (Role.CN, CN_ID, "cn1", self.cn_keys, CN_ADDR),
            ),
            start=2,
        ):
            self.certificates[node_id] = issue_certificate(
                ca,
                self.ca_keys,
                role,
                node_id,
                name,
                private.public,
                address,
                NOW - datetime.timedelta(days=1),
                NOW + datetime.timedelta(days=10),
                serial,
            )

    def credentials(self) -> MobileCredentials:
        """The MN's smart-card credentials."""
        return MobileCredentials(
            USER_ID, 0xD1, 0x5C, self.mn_keys, HOME, HA_ADDR, HA_ID, self.ha_keys.public
        )


_PKI: Pki | None = None


def pki() -> Pki:
    """One PKI for the whole test session (key and certificate generation is slow-ish)."""
    global _PKI
    if _PKI is None:
        _PKI = Pki()
    return _PKI


Handler = Callable[[bytes, Address, float], list[Effect]]


@dataclass
class Delivery:
    """One datagram on the in-memory network."""

    sender: str
    send: Send
    source: Address


class World:
    """The network, the clock and the shells' duties for a set of sans-IO cores."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.registration: dict[str, tuple[str, Handler]] = {}
        self.advertisement_listeners: dict[str, tuple[str, Handler]] = {}
        self.solicitation: dict[str, tuple[str, Handler]] = {}
        self.control: dict[str, tuple[str, Handler]] = {}
        self.addresses: dict[str, Address] = {}
        self.timers: dict[tuple[str, str], tuple[float, int, Callable[[float], list[Effect]]]] = {}
        self.sent: list[Delivery] = []
        self.events: list[tuple[str, Event]] = []
        self.logs: list[tuple[str, Log]] = []
        self.lookups: list[tuple[str, int]] = []
        self.certificates: dict[int, NodeCertificate] = dict(pki().certificates)
        self.drop: Callable[[Delivery], bool] = lambda d: False
        self.queue: deque[tuple[str, Handler, bytes, Address]] = deque()
        self._order = 0

    # -- wiring ------------------------------------------------------------------------

    def add_mn(self, name: str, mn: MobileNode, address: Address = MN_LINK) -> None:
        """Attach an MN: registration replies at ``address``, advertisements broadcast."""
        self.addresses[name] = address
        self.registration[address[0]] = (name, mn.datagram_received)
        self.advertisement_listeners[address[0]] = (name, mn.advertisement_received)

    def add_fa(self, name: str, fa: ForeignAgent) -> None:
        """Attach an FA at its care-of address."""
        address = (str(fa.config.care_of), 434)
        self.addresses[name] = address
        self.registration[address[0]] = (name, fa.datagram_received)
        self.solicitation[address[0]] = (name, fa.solicitation_received)

    def add_ha(self, name: str, ha: HomeAgent) -> None:
        """Attach an HA at its registration address."""
        address = (str(ha.identity.address), 434)
        self.addresses[name] = address
        self.registration[address[0]] = (name, ha.datagram_received)

    def add_control(self, name: str, host: str, handler: Handler) -> None:
        """Deliver control-channel datagrams to ``host`` to ``handler`` (as ``name``); control
        datagrams to hosts without one are only recorded in :attr:`sent`."""
        self.control[host] = (name, handler)

    # -- performing effects --------------------------------------------------------------

    def perform(self, node: str, effects: list[Effect]) -> None:
        """Do what a shell does with ``effects`` from ``node``; deliveries are queued."""
        for effect in effects:
            if isinstance(effect, Send):
                self._send(node, effect)
            elif isinstance(effect, Lookup):
                self.lookups.append((node, effect.node_id))
                certificate = self.certificates.get(effect.node_id)
                answer: NodeCertificate | Exception = (
                    certificate if certificate is not None else UnknownNode(str(effect.node_id))
                )
                self.perform(node, effect.then(answer))
            elif isinstance(effect, StartTimer):
                self._order += 1
                self.timers[(node, effect.name)] = (
                    self.now + effect.delay,
                    self._order,
                    effect.fire,
                )
            elif isinstance(effect, CancelTimer):
                self.timers.pop((node, effect.name), None)
            elif isinstance(effect, Event):
                self.events.append((node, effect))
            elif isinstance(effect, Log):
                effect.render()  # every format must fill from its fields
                self.logs.append((node, effect))

    def _send(self, node: str, send: Send) -> None:
        source = self.addresses.get(node, ("0.0.0.0", 0))
        delivery = Delivery(node, send, source)
        self.sent.append(delivery)
        if self.drop(delivery):
            return
        host = send.to[0]
        if send.channel is Channel.REGISTRATION:
            target = self.registration.get(host)
            if target is not None:
                self.queue.append((target[0], target[1], send.data, source))
        elif send.channel is Channel.ADVERTISEMENT:
            if host in self.solicitation and send.data[:1] == b"\x0a":
                name, handler = self.solicitation[host]
                self.queue.append((name, handler, send.data, source))
            elif host in self.advertisement_listeners:
                name, handler = self.advertisement_listeners[host]
                self.queue.append((name, handler, send.data, source))
            elif host == ADVERTISE_TO[0]:
                for name, handler in self.advertisement_listeners.values():
                    self.queue.append((name, handler, send.data, source))
        elif send.channel is Channel.CONTROL and host in self.control:
            name, handler = self.control[host]
            self.queue.append((name, handler, send.data, (source[0], send.to[1])))

    def run(self) -> None:
        """Deliver queued datagrams until the network is quiet."""
        while self.queue:
            name, handler, data, source = self.queue.popleft()
            self.perform(name, handler(data, source, self.now))

    def call(self, node: str, effects: list[Effect]) -> None:
        """Perform effects a test obtained by calling a core directly, then run."""
        self.perform(node, effects)
        self.run()

    def inject(self, node: str, data: bytes, source: Address) -> None:
        """Deliver ``data`` to ``node``'s registration handler as if from ``source``."""
        for name, handler in self.registration.values():
            if name == node:
                self.perform(name, handler(data, source, self.now))
        self.run()

    def advance(self, seconds: float) -> None:
        """Move the clock, firing due timers in order (each may arm new ones)."""
        end = self.now + seconds
        while True:
            due = [(at, order, key) for key, (at, order, _) in self.timers.items() if at <= end]
            if not due:
                break
            at, _, key = min(due)
            _, _, fire = self.timers.pop(key)
            self.now = max(self.now, at)
            self.perform(key[0], fire(self.now))
            self.run()
        self.now = end

    # -- questions -----------------------------------------------------------------------

    def control_messages(self, sender: str | None = None) -> list[Delivery]:
        """Every control datagram sent so far (by ``sender`` only, when given)."""
        return [
            d
            for d in self.sent
            if d.send.channel is Channel.CONTROL and (sender is None or d.sender == sender)
        ]

    def registration_messages(self) -> list[Delivery]:
        """Every registration datagram sent so far."""
        return [d for d in self.sent if d.send.channel is Channel.REGISTRATION]

    def event_names(self, node: str) -> list[str]:
        """The names of ``node``'s events, in order."""
        return [e.name for n, e in self.events if n == node]

    def warnings(self, node: str) -> list[str]:
        """``node``'s warning log lines, rendered."""
        return [log.render() for n, log in self.logs if n == node and log.level == "warn"]


def make_fa(
    care_of: ipaddress.IPv4Address = FA_ADDR,
    fa_id: int = FA_ID,
    seed: str = "fa",
    **options: Any,
) -> ForeignAgent:
    """A foreign agent with the test PKI's keys."""
    private = pki().fa_keys if fa_id == FA_ID else pki().fa2_keys
    config = ForeignAgentConfig(
        fa_id,
        private,
        care_of,
        advertisement_to=ADVERTISE_TO,
        **options,
    )
    return ForeignAgent(config, SeededRandom(seed))


def make_ha(
    config: HomeAgentConfig | None = None, home: ipaddress.IPv4Address = HOME
) -> HomeAgent:
    """A home agent (in-memory store) serving the test MN and one plain RFC 5944 node."""
    return HomeAgent(
        AgentIdentity(HA_ID, pki().ha_keys, HA_ADDR),
        BindingStore(":memory:"),
        SeededRandom("ha"),
        config,
        mobile_nodes=[MobileNodeRecord(home, USER_ID, pki().mn_keys.public)],
        plain_nodes=[PlainNodeRecord(PLAIN_HOME, PLAIN_SPI, PLAIN_KEY)],
    )


def make_mn(**options: object) -> MobileNode:
    """An MVPN mobile node with the test smart card."""
    config = MobileNodeConfig.from_credentials(pki().credentials(), **options)
    return MobileNode(config, SeededRandom("mn"))


def make_plain_mn(**options: object) -> MobileNode:
    """A plain RFC 5944 mobile node (HMAC-MD5 with the key the HA holds for it)."""
    config = MobileNodeConfig(
        PLAIN_HOME,
        HA_ADDR,
        mode="rfc5944",
        plain_spi=PLAIN_SPI,
        plain_key=PLAIN_KEY,
        **options,  # type: ignore[arg-type]
    )
    return MobileNode(config, SeededRandom("plain-mn"))


def full_world(
    mn: MobileNode | None = None,
    ha_config: HomeAgentConfig | None = None,
    **fa_options: Any,
) -> tuple[World, MobileNode, ForeignAgent, HomeAgent]:
    """MN, FA and HA attached; HA and FA started (the FA advertises at once), MN started."""
    world = World()
    mn = mn if mn is not None else make_mn()
    fa = make_fa(**fa_options)
    ha = make_ha(ha_config)
    world.add_ha("ha", ha)
    world.add_fa("fa", fa)
    world.add_mn("mn", mn)
    world.call("ha", ha.start(world.now))
    world.call("mn", mn.start(world.now))
    world.call("fa", fa.start(world.now))
    return world, mn, fa, ha


# -- correspondent sessions (docs/protocol.md 7) -------------------------------------------


def cn_identity(private: PrivateKeys | None = None) -> AgentIdentity:
    """The test CN (its certificate is in the PKI); other ``private`` keys make an impostor."""
    return AgentIdentity(CN_ID, private or pki().cn_keys, CN_ADDR)


def mn_identity() -> AgentIdentity:
    """The test MN as :mod:`mvpn.core.correspondent` names it: USER ID and home address."""
    return AgentIdentity(USER_ID, pki().mn_keys, HOME)


def attach_control(world: World, name: str, core: HomeAgent | ForeignAgent) -> None:
    """Deliver control datagrams to ``core``'s address through its control handlers, as the
    shell's control port does (:func:`mvpn.core.errors.receive_control`)."""
    host = str(core.identity.address)
    handlers = core.control_handlers()
    world.add_control(
        name,
        host,
        lambda data, source, now: receive_control(data, source, core.counters, handlers, now),
    )


_REQUESTS = itertools.count()
"""Each request draws from its own seed: a new CN Nonce and Diffie-Hellman value."""


def request_communication(
    world: World,
    cn: AgentIdentity | None = None,
    mn_address: ipaddress.IPv4Address = HOME,
    sec_par: int = LOCAL_FLAGS,
    at: float | None = None,
    seed: str = "cn",
) -> tuple[bytes, cor.CnPending]:
    """A Request Communication from the test CN to the test HA for ``mn_address``."""
    return cor.build_request_communication(
        cn or cn_identity(),
        HA_ID,
        pki().ha_keys.public,
        mn_address,
        sec_par,
        DhGroup.X25519,
        world.now if at is None else at,
        SeededRandom(f"{seed}-{next(_REQUESTS)}"),
    )
