"""Configuration of the correspondent node: a frozen :class:`CnConfig`, from ``twistd mvpn-cn``
options or the ``[cn]`` table of a TOML file (relative paths are relative to the file)::

    [cn]
    store = "partners"                   # a domain store: certificate, keys and CA by name
    name = "cn"                          # (or certificate / private_key / ca_certificate)
    address = "127.0.0.20"               # the CN ADDR it announces (default: the certificate's)
    interface = "127.0.0.20"             # where it listens (default: all)
    control_port = 4350                  # MVPN control messages and errors (peers: the same)
    data_port = 4351                     # type-55 data packets to and from the home agents
    tc = "127.0.0.1:4353"                # its domain's Trusted Centre (Ku_HA, Ku_MN)
    peer_certificates = ["home/nodes/ha.pem"]   # known without asking the TC ...
    peer_cas = ["home/ca.pem"]                  # ... checked against their domain's CA
    control_socket = "run/cn.sock"
    tun = "mvpn0"                        # a TUN device routing the peers' home addresses
                                         # into MVPN (root or CAP_NET_ADMIN); absent: none

    [[cn.peers]]                         # a mobile node to open a session with at start
    home_address = "10.1.0.5"
    home_agent = "127.0.0.1"             # the HA's address (its control port: ours)
    home_agent_id = "0x..."              # or home_agent_name = "ha": the HA certificate of
                                         # that name among peer_certificates or in the store
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mvpn.roles.config import (
    CONTROL_PORT,
    AgentFiles,
    ConfigError,
    Endpoint,
    _Table,
    _tc,
    load_toml,
    top_level_control_socket,
)

__all__ = ["DATA_PORT", "CnConfig", "CnPeer", "cn_from_file", "cn_from_table", "parse_peer"]

DATA_PORT = 4351
"""The MVPN data port (docs/protocol.md 2): type-55 packets between the CN and the HAs."""


@dataclass(frozen=True)
class CnPeer:
    """A mobile node the CN sets up a session with at start (docs/protocol.md 7.2): its home
    address, its HA's address, and the HA's node ID or its certificate's name."""

    home_address: ipaddress.IPv4Address
    home_agent: ipaddress.IPv4Address
    home_agent_id: int | None = None
    home_agent_name: str | None = None

    def __post_init__(self) -> None:
        if (self.home_agent_id is None) == (self.home_agent_name is None):
            raise ConfigError(
                f"peer {self.home_address}: give exactly one of home_agent_id, home_agent_name"
            )


@dataclass(frozen=True)
class CnConfig:
    """A correspondent node's settings (see the module docstring)."""

    files: AgentFiles
    address: ipaddress.IPv4Address | None = None
    interface: str = ""
    control_port: int = CONTROL_PORT
    data_port: int = DATA_PORT
    tc: Endpoint | None = None
    peer_certificates: tuple[Path, ...] = ()
    peer_cas: tuple[Path, ...] = ()
    peers: tuple[CnPeer, ...] = ()
    control_socket: Path | None = None
    name: str = "cn"
    tun: str | None = None

    def replace(self, **changes: Any) -> CnConfig:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)


_KEYS = {
    "store",
    "name",
    "certificate",
    "private_key",
    "ca_certificate",
    "address",
    "interface",
    "control_port",
    "data_port",
    "tc",
    "peer_certificates",
    "peer_cas",
    "control_socket",
    "peers",
    "tun",
}


def _node_id(value: object, where: str) -> int:
    """A node ID written as an integer or a string (``"0x..."`` or decimal)."""
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        if isinstance(value, int):
            number = value
        elif isinstance(value, str):
            number = int(value, 0)
        else:
            raise ValueError(value)
    except ValueError:
        raise ConfigError(f"{where}: home_agent_id must be an integer or '0x...'") from None
    if not 0 <= number < 1 << 64:
        raise ConfigError(f"{where}: home_agent_id {number:#x} does not fit in 64 bits")
    return number


def _peer(doc: Mapping[str, Any], base: Path, where: str) -> CnPeer:
    t = _Table(
        doc, base, where, {"home_address", "home_agent", "home_agent_id", "home_agent_name"}
    )
    for key in ("home_address", "home_agent"):
        if key not in t:
            raise ConfigError(f"{where}: '{key}' is required")
    return CnPeer(
        t.address("home_address"),
        t.address("home_agent"),
        _node_id(doc["home_agent_id"], where) if "home_agent_id" in t else None,
        t.string("home_agent_name") if "home_agent_name" in t else None,
    )


def parse_peer(text: str) -> CnPeer:
    """``HOME_ADDRESS,HA_ADDRESS,HA`` (the command line's ``--peer``), where HA is a node ID
    (``0x...`` or decimal) or the name of the HA's certificate."""
    parts = text.split(",")
    if len(parts) != 3:
        raise ConfigError(f"--peer {text!r}: expected HOME_ADDRESS,HA_ADDRESS,HA_ID_OR_NAME")
    home, ha, who = (p.strip() for p in parts)
    try:
        home_address, ha_address = ipaddress.IPv4Address(home), ipaddress.IPv4Address(ha)
    except ValueError as e:
        raise ConfigError(f"--peer {text!r}: {e}") from None
    try:
        return CnPeer(home_address, ha_address, home_agent_id=_node_id(who, "--peer"))
    except ConfigError:
        return CnPeer(home_address, ha_address, home_agent_name=who)


def cn_from_table(doc: Mapping[str, Any], base: Path, where: str = "[cn]") -> CnConfig:
    """A :class:`CnConfig` from a TOML table (see the module docstring)."""
    t = _Table(doc, base, where, _KEYS)
    fields: dict[str, Any] = {"files": t.agent_files()}
    if "name" in t:
        fields["name"] = t.string("name")
    if "address" in t:
        fields["address"] = t.address("address")
    if "interface" in t:
        fields["interface"] = t.string("interface")
    for key in ("control_port", "data_port"):
        if key in t:
            fields[key] = t.port(key)
    fields["tc"] = _tc(t)
    fields["peer_certificates"] = t.paths("peer_certificates")
    fields["peer_cas"] = t.paths("peer_cas")
    peers = doc.get("peers", [])
    if not isinstance(peers, list) or not all(isinstance(p, dict) for p in peers):
        raise ConfigError(f"{where}: peers must be a list of tables ([[cn.peers]])")
    fields["peers"] = tuple(_peer(p, base, f"{where} peers[{i}]") for i, p in enumerate(peers))
    fields["control_socket"] = t.control_socket()
    if "tun" in t:
        fields["tun"] = t.string("tun")
    return CnConfig(**fields)


def cn_from_file(path: Path) -> CnConfig:
    """The ``[cn]`` table of a TOML file; the file-wide ``control_socket`` applies when the
    table sets none."""
    doc = load_toml(path)
    if "cn" not in doc:
        raise ConfigError(f"{path}: no [cn] table")
    config = cn_from_table(doc["cn"], path.parent, f"{path} [cn]")
    if config.control_socket is None:
        config = config.replace(control_socket=top_level_control_socket(path, doc))
    return config
