"""``mvpn pki``: provisioning a domain (draft section 7.1), as ``usage.Options`` subcommands.

::

    mvpn pki --store DIR init-domain --domain corp.example [--tc-id HEX] [--ca-days N] ...
    mvpn pki --store DIR issue {ha,fa,cn} NAME [--node-id HEX] [--address A] [--days N]
    mvpn pki --store DIR issue-mn NAME --ha HA --out CARD [--user-id HEX] [--dvc-mac-id HEX]
                                  [--sc-id HEX] [--address A] [--ha-address A] [--days N]
    mvpn pki --store DIR revoke (NAME | --cert FILE) [--reason TEXT]
    mvpn pki --store DIR rotate NAME [--days N] [--out CARD]
    mvpn pki --store DIR show

The CA password comes from ``--password-file``, else the ``MVPN_PKI_PASSWORD`` environment
variable, else a prompt when standard input is a terminal.
"""

from __future__ import annotations

import datetime
import getpass
import ipaddress
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from twisted.python import usage

from mvpn.pki.bundle import SmartCard
from mvpn.pki.certificate import NodeCertificate, Role
from mvpn.pki.domain import (
    DEFAULT_CA_DAYS,
    DEFAULT_NODE_DAYS,
    DomainStore,
    IssuedNode,
    parse_certificate_of_domain,
)
from mvpn.pki.errors import PkiError
from mvpn.pki.files import read_file

PASSWORD_ENV = "MVPN_PKI_PASSWORD"
PIN_ENV = "MVPN_PKI_PIN"


def _int(value: str) -> int:
    """Parse an ID given in decimal or 0x-hex."""
    return int(value, 0)


def _address(value: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(value)


def _days(value: str) -> int:
    days = int(value)
    if days <= 0:
        raise ValueError("must be at least 1")
    return days


def _utcnow() -> datetime.datetime:
    # The entry point is the one place that reads the clock; the store takes ``now``.
    return datetime.datetime.now(datetime.UTC)


class _InitDomain(usage.Options):
    synopsis = "--domain NAME [--tc-id ID] [--ca-days N] [--node-days N]"
    optParameters = [
        ["domain", None, None, "the domain name (a DNS name; O= in every certificate)"],
        ["tc-id", None, None, "the TC's 64-bit node ID (default: random)", _int],
        ["ca-days", None, DEFAULT_CA_DAYS, "validity of the CA certificate, days", _days],
        ["node-days", None, DEFAULT_NODE_DAYS, "default validity of node certificates", _days],
    ]

    def postOptions(self) -> None:
        if not self["domain"]:
            raise usage.UsageError("init-domain needs --domain")


class _Issue(usage.Options):
    synopsis = "{ha,fa,cn} NAME [--node-id ID] [--address A] [--days N]"
    optParameters = [
        ["node-id", None, None, "the node's 64-bit ID (default: random)", _int],
        ["address", None, None, "the node's IPv4 address (in the certificate)", _address],
        ["days", None, None, "validity, days (default: the domain's)", _days],
    ]
    _roles = {"ha": Role.HA, "fa": Role.FA, "cn": Role.CN}

    def parseArgs(self, role: str, name: str) -> None:  # type: ignore[override]
        if role not in self._roles:
            raise usage.UsageError(f"issue: role must be ha, fa or cn, not {role!r}")
        self["role"] = self._roles[role]
        self["name"] = name


class _IssueMobileNode(usage.Options):
    synopsis = "NAME --ha HA --out CARD [--user-id ID] [--dvc-mac-id ID] [--sc-id ID] ..."
    optParameters = [
        ["ha", None, None, "the name of the mobile node's home agent in this store"],
        ["out", None, None, "where to write the smart card (mode 0600)"],
        ["user-id", None, None, "48-bit USER ID, also the node ID (default: random)", _int],
        ["dvc-mac-id", None, 0, "64-bit DVC MAC ID (the device's MAC address)", _int],
        ["sc-id", None, None, "64-bit SC ID, the smart card's number (default: random)", _int],
        ["address", None, None, "the mobile node's home address", _address],
        ["ha-address", None, None, "the home agent's address (default: its cert's)", _address],
        ["days", None, None, "validity, days (default: the domain's)", _days],
        ["pin-file", None, None, "encrypt the card's private key with the PIN in this file"],
    ]

    def parseArgs(self, name: str) -> None:  # type: ignore[override]
        self["name"] = name

    def postOptions(self) -> None:
        if not self["ha"] or not self["out"]:
            raise usage.UsageError("issue-mn needs --ha and --out")


class _Revoke(usage.Options):
    synopsis = "(NAME | --cert FILE) [--reason TEXT]"
    optParameters = [
        ["cert", None, None, "revoke the certificate in this PEM file"],
        ["reason", None, "unspecified", "why (recorded in the revocation list)"],
    ]

    def parseArgs(self, name: str | None = None) -> None:
        self["name"] = name

    def postOptions(self) -> None:
        if (self["name"] is None) == (self["cert"] is None):
            raise usage.UsageError("revoke needs a node NAME or --cert FILE (one of them)")


class _Rotate(usage.Options):
    synopsis = "NAME [--days N] [--out CARD]"
    optParameters = [
        ["days", None, None, "validity, days (default: the domain's)", _days],
        ["out", None, None, "for a mobile node: where to write the new smart card"],
        ["pin-file", None, None, "for a mobile node: the new card's PIN"],
    ]

    def parseArgs(self, name: str) -> None:  # type: ignore[override]
        self["name"] = name


class _Show(usage.Options):
    synopsis = ""


class PkiOptions(usage.Options):
    """``mvpn pki``: the subcommands that provision a domain."""

    synopsis = "--store DIR COMMAND [options]"
    optParameters = [
        ["store", "s", None, "the domain store directory"],
        ["password-file", "p", None, f"the CA password (default: ${PASSWORD_ENV} or a prompt)"],
    ]
    subCommands = [
        ["init-domain", None, _InitDomain, "create a domain: CA and TC certificates"],
        ["issue", None, _Issue, "issue an agent's or CN's certificate and keys"],
        ["issue-mn", None, _IssueMobileNode, "create a mobile node's smart card"],
        ["revoke", None, _Revoke, "revoke a certificate"],
        ["rotate", None, _Rotate, "new keys and certificate for a node; revoke the old"],
        ["show", None, _Show, "list the domain's certificates and their state"],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("mvpn pki needs a command")
        if not self["store"]:
            raise usage.UsageError("mvpn pki needs --store DIR")


def _read_secret(path: str | None, env: str, what: str, stdin: TextIO) -> bytes | None:
    if path:
        data = read_file(Path(path), f"{what} file").rstrip(b"\r\n")
        if not data:
            raise PkiError(f"{what} file {path!r} is empty")
        return data
    if os.environ.get(env):
        return os.environ[env].encode()
    if stdin.isatty():
        return getpass.getpass(f"{what}: ").encode()
    return None


def run_pki(
    options: PkiOptions,
    out: TextIO,
    now: Callable[[], datetime.datetime] = _utcnow,
    stdin: TextIO = sys.stdin,
) -> None:
    """Carry out a parsed ``mvpn pki`` command; :class:`PkiError` when it cannot."""
    store_path = Path(options["store"])
    sub = options.subOptions
    command = options.subCommand

    def password() -> bytes | None:
        return _read_secret(options["password-file"], PASSWORD_ENV, "CA password", stdin)

    if command == "init-domain":
        secret = password()
        if not secret:
            raise PkiError(f"init-domain needs a CA password (--password-file or ${PASSWORD_ENV})")
        store = DomainStore.init(
            store_path,
            sub["domain"],
            secret,
            now(),
            tc_id=sub["tc-id"],
            ca_days=sub["ca-days"],
            node_days=sub["node-days"],
        )
        ca = store.ca_certificate()
        out.write(f"domain {store.domain}: CA certificate {store.ca_path}\n")
        out.write(f"  TC id {ca.node_id:#018x}, valid until {ca.not_after.isoformat()}\n")
        out.write(
            f"  TC certificate {store.certificate_path('tc')} (TLS name tc.{store.domain})\n"
        )
        return

    store = DomainStore(store_path)
    if command == "issue":
        issued = store.issue(
            sub["role"],
            sub["name"],
            password(),
            now(),
            node_id=sub["node-id"],
            address=sub["address"],
            days=sub["days"],
        )
        _report_issued(out, issued)
    elif command == "issue-mn":
        pin = (
            _read_secret(sub["pin-file"], PIN_ENV, "smart card PIN", stdin)
            if sub["pin-file"]
            else None
        )
        card = store.issue_mobile_node(
            sub["name"],
            sub["ha"],
            password(),
            now(),
            user_id=sub["user-id"],
            dvc_mac_id=sub["dvc-mac-id"],
            sc_id=sub["sc-id"],
            address=sub["address"],
            home_agent_address=sub["ha-address"],
            days=sub["days"],
        )
        card.save(Path(sub["out"]), pin)
        _report_card(out, card, sub["out"])
    elif command == "revoke":
        if sub["cert"]:
            data = read_file(Path(sub["cert"]), "certificate file")
            cert = parse_certificate_of_domain(data, store.ca_certificate())
        else:
            cert = store.certificate(sub["name"])
        revocation = store.revoke(cert, now(), sub["reason"])
        out.write(
            f"revoked {cert.describe()} (node id {revocation.node_id:#x}): {revocation.reason}\n"
        )
    elif command == "rotate":
        old = store.certificate(sub["name"])
        if old.role is Role.MN and not sub["out"]:
            raise PkiError("rotate: a mobile node's new smart card needs --out CARD")
        new = store.rotate(sub["name"], password(), now(), days=sub["days"])
        out.write(f"revoked {old.describe()} (superseded)\n")
        if isinstance(new, SmartCard):
            pin = (
                _read_secret(sub["pin-file"], PIN_ENV, "smart card PIN", stdin)
                if sub["pin-file"]
                else None
            )
            new.save(Path(sub["out"]), pin)
            _report_card(out, new, sub["out"])
        else:
            _report_issued(out, new)
    elif command == "show":
        revoked = store.revocations()
        moment = now()
        for cert in store.nodes():
            state = (
                "revoked"
                if revoked.is_revoked(cert.serial)
                else "expired"
                if cert.not_after < moment
                else "valid"
            )
            out.write(_describe_line(cert, state))
        out.write(f"{len(revoked)} revoked certificate(s) in {store.revocations_path}\n")


def _describe_line(cert: NodeCertificate, state: str) -> str:
    address = cert.address if cert.address is not None else "-"
    return (
        f"{cert.role.name:2} {cert.name:16} id {cert.node_id:#018x} addr {address!s:15} "
        f"serial {cert.serial:#x} until {cert.not_after.date().isoformat()} {state}\n"
    )


def _report_issued(out: TextIO, issued: IssuedNode) -> None:
    cert = issued.certificate
    out.write(f"issued {cert.describe()} node id {cert.node_id:#018x}\n")
    out.write(f"  certificate {issued.certificate_path}\n  private key {issued.key_path} (0600)\n")


def _report_card(out: TextIO, card: SmartCard, path: str) -> None:
    out.write(
        f"smart card {path} (0600) for {card.certificate.describe()}: "
        f"USER ID {card.user_id:#014x}, SC ID {card.sc_id:#018x}, "
        f"home agent {card.home_agent.name} at {card.home_agent_address}\n"
    )
