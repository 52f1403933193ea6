"""Configuration of the registration roles: frozen ``HaConfig``, ``FaConfig``, ``MnConfig``.

Each comes from its twistd plugin's ``usage.Options`` or from a TOML file (standard library
``tomllib``; relative paths are relative to the file). One file may define several roles,
for ``twistd -n mvpn-site --config site.toml`` (tests, the demo, small sites)::

    control_socket = "run/site.sock"     # one status socket for every role of the process

    [ha]
    store = "home"                       # a domain store: certificate, keys and CA by name
    name = "ha"                          # (or certificate / private_key / ca_certificate)
    address = "127.0.0.1"                # the HA address mobile nodes register with
    port = 434
    control_port = 4350                  # MVPN control messages and errors (0: closed)
    data_port = 4351                     # type-55 data packets from and to CNs (UDP)
    tunnel_port = 4352                   # the FAs' tunnel port the HA dials (TCP)
    database = "ha.sqlite"
    tc = "127.0.0.1:4353"                # the domain's Trusted Centre (mutual TLS)
    peer_certificates = ["visited/nodes/fa.pem"]  # known without asking the TC ...
    peer_cas = ["visited/ca.pem"]        # ... checked against their domain's CA
    mobile_nodes = ["alice.pem"]         # besides the store's MNs whose home agent is "ha"
    lifetime = 300
    key_refresh = 0.5                    # refresh keys older than this share of their life

    [[ha.plain_nodes]]                   # RFC 5944 nodes without MVPN (HMAC-MD5, ext. 32)
    home_address = "10.1.0.9"
    spi = 1000
    key = "00112233445566778899aabbccddeeff"

    [fa]
    store = "visited"
    name = "fa"
    address = "127.0.0.2"                # care-of address (and where advertisements come from)
    port = 434
    control_port = 4350                  # every role's default; peers are assumed to match
    data_port = 4351                     # type-55 data packets from and to mobile nodes (UDP)
    tunnel_port = 4352                   # where home agents' tunnels connect (TCP)
    home_agent_port = 434                # where the HAs of visiting nodes listen
    advertisement = "auto"               # "icmp" (raw socket), "udp", or "auto"
    advertisement_port = 4349
    advertise_to = ["127.0.0.1:4349"]    # UDP destinations; empty: the limited broadcast
    advertisement_interval = 1.0         # seconds
    advertisement_lifetime = 9           # seconds a mobile node trusts one advertisement
    lifetime = 300

    [mn]                                 # or [[mn]] for several mobile nodes
    name = "alice"                       # names the node in logs and mvpn status
    smart_card = "alice.card"
    mode = "mvpn"                        # or "rfc5944": plain Mobile IP, HMAC-MD5 with
                                         # plain_spi, plain_key (hex), home_address, home_agent
    address = "127.0.0.1"                # where the MN listens on the foreign link
    port = 0                             # its registration port (0: any)
    control_port = 4350                  # where MVPN errors from its FA arrive (0: closed)
    data_port = 4351                     # type-55 data packets from and to its FA (UDP)
    tun = "mvpn0"                        # a TUN device carrying the host's traffic from the
    tun_routes = ["192.0.2.7/32"]        # home address to these networks (the CNs) through
                                         # MVPN (root or CAP_NET_ADMIN); no tun: none
    advertisement_port = 4349
    solicit_to = ["127.0.0.2:4349"]
    agent_port = 434                     # the FA's registration port
    lifetime = 300

Every table may also set ``control_socket`` (used by the single-role plugins).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mvpn.core.errors import DEFAULT_CONTROL_PORT
from mvpn.pki.domain import DomainStore
from mvpn.pki.errors import MissingFile, PkiError
from mvpn.roles.transport import DEFAULT_ADVERTISEMENT_PORT, AdvertisementMode

REGISTRATION_PORT = 434
"""RFC 5944 section 3: Registration Requests go to UDP 434."""

DEFAULT_LIFETIME = 300
"""Registration lifetime asked for and granted by default (docs/protocol.md 10)."""

MAX_LIFETIME = 1800
"""The longest lifetime an agent grants (docs/protocol.md 10)."""

DEFAULT_TC_PORT = 4353

CONTROL_PORT = DEFAULT_CONTROL_PORT
"""The MVPN control port (docs/protocol.md 2): control messages and errors (draft 4, 6).
Every role listens on it; a node sends to its peers' control port assuming it is its own."""

DATA_PORT = 4351
"""UDP port of type-55 data packets, CN <-> HA and FA <-> MN (docs/protocol.md 2); a node
sends to its peers' data port assuming it is its own."""

TUNNEL_PORT = 4352
"""TCP port of the HA-FA tunnel (docs/protocol.md 2, 8.2): the FA listens, the HA dials the
FA's care-of address at its own configured ``tunnel_port``."""


class ConfigError(PkiError):
    """A configuration file or option that cannot be used; the message says which."""


@dataclass(frozen=True)
class Endpoint:
    """A host and port (``HOST:PORT`` in files and options)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, default_port: int | None = None) -> Endpoint:
        """``HOST:PORT``, or ``HOST`` alone when there is a default port."""
        host, sep, port = text.rpartition(":")
        if not sep:
            if default_port is None:
                raise ConfigError(f"{text!r}: expected HOST:PORT")
            return cls(_ipv4(text, "host"), default_port)
        try:
            return cls(_ipv4(host, "host"), check_port(int(port)))
        except ValueError as e:
            raise ConfigError(f"{text!r}: expected HOST:PORT ({e})") from None

    def as_tuple(self) -> tuple[str, int]:
        """``(host, port)`` as Twisted's UDP transports take it."""
        return (self.host, self.port)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class AgentFiles:
    """An agent's own certificate and private keys and its domain's CA certificate."""

    certificate: Path
    private_key: Path
    ca_certificate: Path
    store: Path | None = None
    """The domain store the files come from, if any (an HA reads its mobile nodes there)."""
    name: str | None = None
    """The node's name in that store."""

    @classmethod
    def from_store(cls, store: Path, name: str) -> AgentFiles:
        """The files of node ``name`` in a domain store (``mvpn pki --store``)."""
        domain = DomainStore(store)
        return cls(
            domain.certificate_path(name), domain.key_path(name), domain.ca_path, store, name
        )


@dataclass(frozen=True)
class PlainNode:
    """A plain RFC 5944 mobile node the HA holds a shared key for (docs/protocol.md 6.3)."""

    home_address: ipaddress.IPv4Address
    spi: int
    key: bytes = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        if not 256 <= self.spi <= 0xFFFFFFFF:
            raise ConfigError(f"plain node {self.home_address}: SPI {self.spi} not in 256..2^32-1")
        if not self.key:
            raise ConfigError(f"plain node {self.home_address}: empty key")


@dataclass(frozen=True)
class HaConfig:
    """Everything ``build_ha_service`` needs."""

    files: AgentFiles
    database: Path
    address: ipaddress.IPv4Address | None = None
    """The HA address; ``None``: the address in its certificate."""
    port: int = REGISTRATION_PORT
    interface: str = ""
    control_port: int = CONTROL_PORT
    """The MVPN control port (errors to FAs go to this port of theirs); 0: closed."""
    data_port: int = DATA_PORT
    """The data port (CNs' packets arrive here, and go to this port of theirs)."""
    tunnel_port: int = TUNNEL_PORT
    """The FAs' tunnel port the HA dials."""
    tc: Endpoint | None = None
    peer_certificates: tuple[Path, ...] = ()
    peer_cas: tuple[Path, ...] = ()
    lifetime: int = DEFAULT_LIFETIME
    key_refresh: float = 0.5
    plain_nodes: tuple[PlainNode, ...] = ()
    mobile_nodes: tuple[Path, ...] = ()
    """Certificates of the MVPN mobile nodes this HA serves, besides those its store lists
    with this HA as their home agent (``mvpn pki issue-mn``)."""
    control_socket: Path | None = None

    def replace(self, **changes: Any) -> HaConfig:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class FaConfig:
    """Everything ``build_fa_service`` needs."""

    files: AgentFiles
    address: ipaddress.IPv4Address | None = None
    """The care-of address; ``None``: the address in its certificate."""
    port: int = REGISTRATION_PORT
    interface: str = ""
    control_port: int = CONTROL_PORT
    """The MVPN control port (errors to MNs go to this port of theirs); 0: closed."""
    data_port: int = DATA_PORT
    """The data port (visitors' packets arrive here, and go to this port of theirs)."""
    tunnel_port: int = TUNNEL_PORT
    """The TCP port home agents' tunnels connect to."""
    home_agent_port: int = REGISTRATION_PORT
    tc: Endpoint | None = None
    peer_certificates: tuple[Path, ...] = ()
    peer_cas: tuple[Path, ...] = ()
    lifetime: int = DEFAULT_LIFETIME
    advertisement: AdvertisementMode = AdvertisementMode.AUTO
    advertisement_port: int = DEFAULT_ADVERTISEMENT_PORT
    advertise_to: tuple[Endpoint, ...] = ()
    advertisement_interval: float = 1.0
    """Seconds between advertisements (docs/protocol.md 10)."""
    advertisement_lifetime: int = 9
    """ICMP Lifetime of the advertisements: mobile nodes move when it passes unheard."""
    control_socket: Path | None = None

    def replace(self, **changes: Any) -> FaConfig:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class MnConfig:
    """Everything ``build_mn_service`` needs."""

    smart_card: Path | None = None
    """The MN's credentials (``mvpn pki issue-mn``); required in ``mvpn`` mode."""
    pin: bytes | None = dataclasses.field(default=None, repr=False)
    mode: str = "mvpn"
    """``"mvpn"`` (draft-sanchez-mvpn-00) or ``"rfc5944"`` (plain Mobile IP)."""
    home_address: ipaddress.IPv4Address | None = None
    """``None``: the address in the smart card's certificate."""
    home_agent: ipaddress.IPv4Address | None = None
    """``None``: the home agent address on the smart card (required in ``rfc5944`` mode)."""
    address: str = ""
    """Where the MN listens (registration replies, advertisements)."""
    port: int = 0
    control_port: int = CONTROL_PORT
    """The MVPN control port, where its FA's error messages arrive; 0: closed."""
    data_port: int = DATA_PORT
    """The data port (its FA's packets arrive here, and go to this port of the FA's)."""
    tun: str | None = None
    """A TUN device with the home address, for unmodified applications (None: no device)."""
    tun_routes: tuple[ipaddress.IPv4Network, ...] = ()
    """Networks routed into the TUN device: the correspondent nodes the host talks to."""
    advertisement: AdvertisementMode = AdvertisementMode.AUTO
    advertisement_port: int = DEFAULT_ADVERTISEMENT_PORT
    solicit_to: tuple[Endpoint, ...] = ()
    agent_port: int = REGISTRATION_PORT
    lifetime: int = DEFAULT_LIFETIME
    plain_spi: int | None = None
    plain_key: bytes | None = dataclasses.field(default=None, repr=False)
    name: str = "mn"
    control_socket: Path | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("mvpn", "rfc5944"):
            raise ConfigError(f"mode {self.mode!r}: expected 'mvpn' or 'rfc5944'")
        if self.mode == "rfc5944" and (self.plain_spi is None or not self.plain_key):
            raise ConfigError("mode 'rfc5944' needs plain_spi and plain_key")
        if self.mode == "rfc5944" and (self.home_address is None or self.home_agent is None):
            raise ConfigError("mode 'rfc5944' needs home_address and home_agent")
        if self.mode == "mvpn" and self.smart_card is None:
            raise ConfigError("mode 'mvpn' needs smart_card")

    def replace(self, **changes: Any) -> MnConfig:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class SiteConfig:
    """The roles one process hosts (``twistd mvpn-site``) and its control socket."""

    ha: HaConfig | None = None
    fa: FaConfig | None = None
    mn: tuple[MnConfig, ...] = ()
    control_socket: Path | None = None


# -- TOML ---------------------------------------------------------------------------------


def check_port(port: int) -> int:
    """``port`` if it is a valid UDP/TCP port number (0: any)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return port


def _ipv4(text: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise ConfigError(f"{what} {text!r}: not an IPv4 address") from None


class _Table:
    """One TOML table, read with its file's directory and name for messages."""

    def __init__(self, doc: Mapping[str, Any], base: Path, where: str, known: set[str]) -> None:
        unknown = set(doc) - known
        if unknown:
            raise ConfigError(f"{where}: unknown settings {sorted(unknown)}")
        self.doc = doc
        self.base = base
        self.where = where

    def __contains__(self, key: str) -> bool:
        return key in self.doc

    def path(self, key: str) -> Path:
        value = self.doc[key]
        if not isinstance(value, str):
            raise ConfigError(f"{self.where}: {key} must be a string path")
        return self.base / value

    def paths(self, key: str) -> tuple[Path, ...]:
        values = self.doc.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{self.where}: {key} must be a list of string paths")
        return tuple(self.base / v for v in values)

    def integer(self, key: str) -> int:
        value = self.doc[key]
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{self.where}: {key} must be an integer")
        return value

    def port(self, key: str) -> int:
        try:
            return check_port(self.integer(key))
        except ValueError as e:
            raise ConfigError(f"{self.where}: {key}: {e}") from None

    def number(self, key: str) -> float:
        value = self.doc[key]
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigError(f"{self.where}: {key} must be a number")
        return float(value)

    def string(self, key: str) -> str:
        value = self.doc[key]
        if not isinstance(value, str):
            raise ConfigError(f"{self.where}: {key} must be a string")
        return value

    def address(self, key: str) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Address(_ipv4(self.string(key), f"{self.where}: {key}"))

    def endpoints(self, key: str, default_port: int) -> tuple[Endpoint, ...]:
        values = self.doc.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{self.where}: {key} must be a list of 'HOST:PORT' strings")
        return tuple(Endpoint.parse(v, default_port) for v in values)

    def mode(self, key: str) -> AdvertisementMode:
        text = self.string(key)
        try:
            return AdvertisementMode(text)
        except ValueError:
            raise ConfigError(f"{self.where}: {key} {text!r}: 'auto', 'icmp' or 'udp'") from None

    def lifetime(self) -> int:
        value = self.integer("lifetime")
        if not 1 <= value <= MAX_LIFETIME:
            raise ConfigError(f"{self.where}: lifetime {value} not in 1..{MAX_LIFETIME}")
        return value

    def agent_files(self) -> AgentFiles:
        if "store" in self:
            if "name" not in self:
                raise ConfigError(f"{self.where}: 'store' needs 'name' (the node in the store)")
            files = AgentFiles.from_store(self.path("store"), self.string("name"))
        else:
            missing = {"certificate", "private_key", "ca_certificate"} - set(self.doc)
            if missing:
                raise ConfigError(f"{self.where}: give 'store' and 'name', or {sorted(missing)}")
            return AgentFiles(
                self.path("certificate"), self.path("private_key"), self.path("ca_certificate")
            )
        overrides: dict[str, Any] = {
            key: self.path(key)
            for key in ("certificate", "private_key", "ca_certificate")
            if key in self
        }
        return dataclasses.replace(files, **overrides)

    def control_socket(self) -> Path | None:
        return self.path("control_socket") if "control_socket" in self else None


_AGENT_KEYS = {
    "peer_cas",
    "store",
    "name",
    "certificate",
    "private_key",
    "ca_certificate",
    "address",
    "port",
    "control_port",
    "data_port",
    "tunnel_port",
    "interface",
    "tc",
    "peer_certificates",
    "lifetime",
    "control_socket",
}


def _tc(table: _Table) -> Endpoint | None:
    return Endpoint.parse(table.string("tc"), DEFAULT_TC_PORT) if "tc" in table else None


def ha_from_table(doc: Mapping[str, Any], base: Path, where: str = "[ha]") -> HaConfig:
    """An :class:`HaConfig` from a TOML table (see the module docstring)."""
    t = _Table(
        doc, base, where, _AGENT_KEYS | {"database", "key_refresh", "plain_nodes", "mobile_nodes"}
    )
    if "database" not in t:
        raise ConfigError(f"{where}: 'database' (the SQLite binding store) is required")
    fields: dict[str, Any] = {"files": t.agent_files(), "database": t.path("database")}
    if "address" in t:
        fields["address"] = t.address("address")
    for key in ("port", "control_port", "data_port", "tunnel_port"):
        if key in t:
            fields[key] = t.port(key)
    if "interface" in t:
        fields["interface"] = t.string("interface")
    fields["tc"] = _tc(t)
    fields["peer_certificates"] = t.paths("peer_certificates")
    fields["peer_cas"] = t.paths("peer_cas")
    if "lifetime" in t:
        fields["lifetime"] = t.lifetime()
    if "key_refresh" in t:
        share = t.number("key_refresh")
        if not 0 < share <= 1:
            raise ConfigError(f"{where}: key_refresh {share} not in (0, 1]")
        fields["key_refresh"] = share
    plain = []
    for i, item in enumerate(doc.get("plain_nodes", [])):
        node = _Table(item, base, f"{where} plain_nodes[{i}]", {"home_address", "spi", "key"})
        try:
            secret = bytes.fromhex(node.string("key"))
            plain.append(PlainNode(node.address("home_address"), node.integer("spi"), secret))
        except (KeyError, ValueError) as e:
            raise ConfigError(f"{node.where}: {e}") from None
    fields["plain_nodes"] = tuple(plain)
    fields["mobile_nodes"] = t.paths("mobile_nodes")
    fields["control_socket"] = t.control_socket()
    return HaConfig(**fields)


def fa_from_table(doc: Mapping[str, Any], base: Path, where: str = "[fa]") -> FaConfig:
    """An :class:`FaConfig` from a TOML table (see the module docstring)."""
    extra = {
        "home_agent_port",
        "advertisement",
        "advertisement_port",
        "advertise_to",
        "advertisement_interval",
        "advertisement_lifetime",
    }
    t = _Table(doc, base, where, _AGENT_KEYS | extra)
    fields: dict[str, Any] = {"files": t.agent_files()}
    if "address" in t:
        fields["address"] = t.address("address")
    for key in (
        "port",
        "control_port",
        "data_port",
        "tunnel_port",
        "home_agent_port",
        "advertisement_port",
    ):
        if key in t:
            fields[key] = t.port(key)
    if "interface" in t:
        fields["interface"] = t.string("interface")
    fields["tc"] = _tc(t)
    fields["peer_certificates"] = t.paths("peer_certificates")
    fields["peer_cas"] = t.paths("peer_cas")
    if "lifetime" in t:
        fields["lifetime"] = t.lifetime()
    if "advertisement" in t:
        fields["advertisement"] = t.mode("advertisement")
    port = fields.get("advertisement_port", DEFAULT_ADVERTISEMENT_PORT)
    fields["advertise_to"] = t.endpoints("advertise_to", port)
    if "advertisement_interval" in t:
        fields["advertisement_interval"] = t.number("advertisement_interval")
    if "advertisement_lifetime" in t:
        fields["advertisement_lifetime"] = t.integer("advertisement_lifetime")
    fields["control_socket"] = t.control_socket()
    return FaConfig(**fields)


def mn_from_table(doc: Mapping[str, Any], base: Path, where: str = "[mn]") -> MnConfig:
    """An :class:`MnConfig` from a TOML table (see the module docstring)."""
    known = {
        "smart_card",
        "pin",
        "mode",
        "home_address",
        "home_agent",
        "address",
        "port",
        "control_port",
        "data_port",
        "advertisement",
        "advertisement_port",
        "solicit_to",
        "agent_port",
        "lifetime",
        "plain_spi",
        "plain_key",
        "name",
        "control_socket",
        "tun",
        "tun_routes",
    }
    t = _Table(doc, base, where, known)
    fields: dict[str, Any] = {}
    if "smart_card" in t:
        fields["smart_card"] = t.path("smart_card")
    if "pin" in t:
        fields["pin"] = t.string("pin").encode()
    for key in ("mode", "address", "name"):
        if key in t:
            fields[key] = t.string(key)
    for key in ("home_address", "home_agent"):
        if key in t:
            fields[key] = t.address(key)
    for key in ("port", "control_port", "data_port", "advertisement_port", "agent_port"):
        if key in t:
            fields[key] = t.port(key)
    if "advertisement" in t:
        fields["advertisement"] = t.mode("advertisement")
    fields["solicit_to"] = t.endpoints(
        "solicit_to", fields.get("advertisement_port", DEFAULT_ADVERTISEMENT_PORT)
    )
    if "lifetime" in t:
        fields["lifetime"] = t.lifetime()
    if "plain_spi" in t:
        fields["plain_spi"] = t.integer("plain_spi")
    if "plain_key" in t:
        try:
            fields["plain_key"] = bytes.fromhex(t.string("plain_key"))
        except ValueError as e:
            raise ConfigError(f"{where}: plain_key: {e}") from None
    fields["control_socket"] = t.control_socket()
    if "tun" in t:
        fields["tun"] = t.string("tun")
    if "tun_routes" in t:
        fields["tun_routes"] = _networks(doc["tun_routes"], f"{where} tun_routes")
    try:
        return MnConfig(**fields)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _networks(value: object, where: str) -> tuple[ipaddress.IPv4Network, ...]:
    """A list of IPv4 networks (``"192.0.2.0/24"``, or an address for a /32)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{where}: expected a list of networks such as "192.0.2.0/24"')
    try:
        return tuple(ipaddress.IPv4Network(v) for v in value)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def parse_networks(text: str, where: str) -> tuple[ipaddress.IPv4Network, ...]:
    """Comma-separated IPv4 networks (the command line's ``--tun-routes``)."""
    return _networks([t.strip() for t in text.split(",") if t.strip()], where)


def load_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; :class:`MissingFile` or :class:`ConfigError`."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise MissingFile(f"configuration file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from e


def top_level_control_socket(path: Path, doc: Mapping[str, Any]) -> Path | None:
    """The file-wide ``control_socket`` (relative to the file), for a single-role plugin
    reading one table of a file."""
    value = doc.get("control_socket")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{path}: control_socket must be a string path")
    return path.parent / value


def site_from_toml(path: Path) -> SiteConfig:
    """Every role a configuration file defines (see the module docstring)."""
    doc = load_toml(path)
    unknown = set(doc) - {"ha", "fa", "mn", "control_socket"}
    if unknown:
        raise ConfigError(f"{path}: unknown settings {sorted(unknown)}")
    base = path.parent
    ha = ha_from_table(doc["ha"], base, f"{path} [ha]") if "ha" in doc else None
    fa = fa_from_table(doc["fa"], base, f"{path} [fa]") if "fa" in doc else None
    mn_doc = doc.get("mn", [])
    mn_tables = [mn_doc] if isinstance(mn_doc, dict) else list(mn_doc)
    mns = tuple(mn_from_table(item, base, f"{path} [mn][{i}]") for i, item in enumerate(mn_tables))
    names = [mn.name for mn in mns]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: mobile nodes need distinct names (got {names})")
    control = doc.get("control_socket")
    if control is not None and not isinstance(control, str):
        raise ConfigError(f"{path}: control_socket must be a string path")
    if ha is None and fa is None and not mns:
        raise ConfigError(f"{path}: defines no role ([ha], [fa] or [mn])")
    return SiteConfig(ha, fa, mns, base / control if control else None)
