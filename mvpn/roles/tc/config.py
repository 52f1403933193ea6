"""The Trusted Centre's configuration: a frozen :class:`TcConfig`, from options or TOML.

A TOML file (read with the standard library's ``tomllib``; relative paths are relative to
the file)::

    store = "corp"                 # a domain store (mvpn pki init-domain) fills the paths
    port = 4353
    interface = "127.0.0.1"
    revocation_poll = 60           # seconds between re-reads of revoked.json
    peer_cache_ttl = 300           # seconds a peer TC's answer is cached at most

    [[peers]]
    domain = "branch.example"
    ca_certificate = "branch-ca.pem"
    host = "192.0.2.7"
    port = 4353

Instead of ``store`` the paths may be given one by one: ``ca_certificate``,
``certificate``, ``private_key``, ``database`` and (optional) ``revocation_list``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mvpn.pki.certificate import check_domain_name
from mvpn.pki.domain import TC_NAME
from mvpn.pki.errors import MissingFile, PkiError

DEFAULT_PORT = 4353
"""TCP port of the TC (mutual TLS, AMP): not assigned by IANA to anything mvpn meets."""

DEFAULT_REVOCATION_POLL = 60.0
"""Seconds between checks of the domain store (revoked.json, nodes/): ``mvpn pki revoke``
and ``issue`` take effect at the running TC within a minute."""

DEFAULT_PEER_CACHE_TTL = 300.0
"""Seconds a peer TC's answer is kept: bounds how long a revocation in the other domain
goes unnoticed here."""


class ConfigError(PkiError):
    """A configuration file or option that cannot be used; the message says which."""


@dataclass(frozen=True)
class PeerConfig:
    """A peer domain's TC: its CA certificate and where its TC listens."""

    domain: str
    ca_certificate: Path
    host: str
    port: int = DEFAULT_PORT

    @classmethod
    def parse(cls, text: str) -> PeerConfig:
        """``DOMAIN=CA_PEM@HOST:PORT`` (the ``--peer`` option)."""
        try:
            domain, rest = text.split("=", 1)
            ca, where = rest.rsplit("@", 1)
            host, port = where.rsplit(":", 1)
            return cls(check_domain_name(domain), Path(ca), host, _port(int(port)))
        except ValueError as e:
            raise ConfigError(f"--peer {text!r}: expected DOMAIN=CA_PEM@HOST:PORT ({e})") from None


@dataclass(frozen=True)
class TcConfig:
    """Everything ``build_tc_service`` needs."""

    ca_certificate: Path
    certificate: Path
    private_key: Path
    database: Path
    port: int = DEFAULT_PORT
    interface: str = ""
    revocation_list: Path | None = None
    revocation_poll: float = DEFAULT_REVOCATION_POLL
    peers: tuple[PeerConfig, ...] = ()
    peer_cache_ttl: float = DEFAULT_PEER_CACHE_TTL
    nodes_dir: Path | None = None

    @classmethod
    def from_store(cls, store: Path, **overrides: Any) -> TcConfig:
        """The paths of a domain store (``mvpn pki --store``), plus ``overrides``."""
        if not (store / "domain.json").exists():
            raise MissingFile(f"{str(store)!r} is not a domain store (no domain.json)")
        paths: dict[str, Any] = {
            "ca_certificate": store / "ca.pem",
            "certificate": store / "nodes" / f"{TC_NAME}.pem",
            "private_key": store / "nodes" / f"{TC_NAME}.key",
            "database": store / "tc.sqlite",
            "revocation_list": store / "revoked.json",
            "nodes_dir": store / "nodes",
        }
        paths.update(overrides)
        return cls(**paths)

    def replace(self, **changes: Any) -> TcConfig:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_toml(cls, path: Path) -> TcConfig:
        """Read a TOML configuration file (see the module docstring)."""
        try:
            with path.open("rb") as f:
                doc = tomllib.load(f)
        except FileNotFoundError:
            raise MissingFile(f"configuration file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: {e}") from e
        base = path.parent

        def where(value: object, key: str) -> Path:
            if not isinstance(value, str):
                raise ConfigError(f"{path}: {key} must be a string path")
            return base / value

        known = {
            "store",
            "ca_certificate",
            "certificate",
            "private_key",
            "database",
            "revocation_list",
            "port",
            "interface",
            "revocation_poll",
            "peer_cache_ttl",
            "peers",
        }
        unknown = set(doc) - known
        if unknown:
            raise ConfigError(f"{path}: unknown settings {sorted(unknown)}")
        fields: dict[str, Any] = {}
        for key in ("ca_certificate", "certificate", "private_key", "database", "revocation_list"):
            if key in doc:
                fields[key] = where(doc[key], key)
        try:
            if "port" in doc:
                fields["port"] = _port(int(doc["port"]))
            if "interface" in doc:
                fields["interface"] = str(doc["interface"])
            for key in ("revocation_poll", "peer_cache_ttl"):
                if key in doc:
                    fields[key] = float(doc[key])
            peers = []
            for item in doc.get("peers", []):
                peers.append(
                    PeerConfig(
                        check_domain_name(str(item["domain"])),
                        where(item["ca_certificate"], "peers.ca_certificate"),
                        str(item["host"]),
                        _port(int(item.get("port", DEFAULT_PORT))),
                    )
                )
            fields["peers"] = tuple(peers)
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{path}: {e}") from e
        if "store" in doc:
            return cls.from_store(where(doc["store"], "store"), **fields)
        missing = {"ca_certificate", "certificate", "private_key", "database"} - set(fields)
        if missing:
            raise ConfigError(f"{path}: give 'store' or all of {sorted(missing)}")
        return cls(**fields)


def _port(port: int) -> int:
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return port
