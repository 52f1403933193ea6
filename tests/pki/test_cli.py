"""``mvpn pki``: the console script end to end, exit codes and error messages."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest

from mvpn.cli import main
from mvpn.pki.bundle import SmartCard
from mvpn.pki.certificate import Role
from mvpn.pki.domain import DomainStore


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text("s3cret\n")
    return path


def test_full_provisioning_flow(
    tmp_path: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """init-domain, issue ha, issue-mn, rotate, revoke and show work in sequence."""
    store = str(tmp_path / "corp")
    pki = ("pki", "--store", store, "--password-file", str(password_file))
    assert _run(*pki, "init-domain", "--domain", "corp.example", "--tc-id", "0x10")[0] == 0
    code, out = _run(*pki, "issue", "--address", "10.1.0.1", "--node-id", "0x20", "ha", "ha1")
    assert code == 0 and "ha/ha1@corp.example" in out
    card_path = tmp_path / "laptop.card"
    code, out = _run(
        *pki,
        "issue-mn",
        "--ha",
        "ha1",
        "--out",
        str(card_path),
        "--user-id",
        "0xABC",
        "--dvc-mac-id",
        "0x020000aabbcc",
        "--sc-id",
        "77",
        "laptop",
    )
    assert code == 0 and "USER ID 0x000000000abc" in out
    assert stat.S_IMODE(card_path.stat().st_mode) == 0o600
    card = SmartCard.load(card_path)
    assert (card.user_id, card.dvc_mac_id, card.sc_id) == (0xABC, 0x020000AABBCC, 77)
    code, out = _run(*pki, "rotate", "ha1")
    assert code == 0 and "superseded" in out
    code, out = _run("pki", "--store", store, "revoke", "--reason", "lost", "laptop")
    assert code == 0 and "lost" in out
    code, out = _run("pki", "--store", store, "show")
    assert code == 0
    assert "laptop" in out and "revoked" in out and "2 revoked" in out
    domain = DomainStore(Path(store))
    assert domain.certificate("ha1").role is Role.HA
    reasons = [e["reason"] for e in json.loads((Path(store) / "revoked.json").read_text())]
    assert reasons == ["superseded", "lost"]


def test_wrong_password_exit_1(
    tmp_path: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong CA password fails with exit status 1 and 'wrong password' on stderr."""
    store = str(tmp_path / "corp")
    _run("pki", "--store", store, "-p", str(password_file), "init-domain", "--domain", "c.example")
    bad = tmp_path / "bad"
    bad.write_text("nope\n")
    code, _ = _run("pki", "--store", store, "-p", str(bad), "issue", "fa", "fa1")
    assert code == 1
    assert "wrong password" in capsys.readouterr().err


def test_password_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$MVPN_PKI_PASSWORD supplies the CA password when no file is given."""
    monkeypatch.setenv("MVPN_PKI_PASSWORD", "from-env")
    store = str(tmp_path / "corp")
    assert _run("pki", "--store", store, "init-domain", "--domain", "c.example")[0] == 0
    assert _run("pki", "--store", store, "issue", "cn", "cn1")[0] == 0
    monkeypatch.setenv("MVPN_PKI_PASSWORD", "other")
    assert _run("pki", "--store", store, "issue", "cn", "cn2")[0] == 1


def test_missing_store_and_missing_file(
    tmp_path: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store or a certificate file that does not exist is named in the error."""
    code, _ = _run("pki", "--store", str(tmp_path / "none"), "show")
    assert code == 1 and "is not a domain store" in capsys.readouterr().err
    store = str(tmp_path / "corp")
    _run("pki", "--store", store, "-p", str(password_file), "init-domain", "--domain", "c.example")
    code, _ = _run("pki", "--store", store, "revoke", "--cert", str(tmp_path / "x.pem"))
    assert code == 1 and "does not exist" in capsys.readouterr().err


def test_certificate_from_another_domain(
    tmp_path: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Revoking another domain's certificate is refused, naming both domains."""
    pw = ("-p", str(password_file))
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    _run("pki", "--store", a, *pw, "init-domain", "--domain", "a.example")
    _run("pki", "--store", b, *pw, "init-domain", "--domain", "b.example")
    _run("pki", "--store", b, *pw, "issue", "ha", "ha1")
    code, _ = _run("pki", "--store", a, "revoke", "--cert", str(Path(b) / "nodes" / "ha1.pem"))
    err = capsys.readouterr().err
    assert code == 1 and "b.example" in err and "a.example" in err


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown role or a missing argument is a usage error (status 2)."""
    assert _run("pki", "--store", str(tmp_path), "issue", "xx", "n")[0] == 2
    assert "role must be ha, fa or cn" in capsys.readouterr().err
    assert _run("pki", "init-domain", "--domain", "a.example")[0] == 2
    assert _run()[0] == 2
    assert _run("pki", "--store", str(tmp_path), "issue-mn", "mn")[0] == 2


def test_rotate_mobile_node_needs_out(
    tmp_path: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rotating a mobile node without --out is refused before anything changes."""
    pki = ("pki", "--store", str(tmp_path / "c"), "-p", str(password_file))
    _run(*pki, "init-domain", "--domain", "c.example")
    _run(*pki, "issue", "--address", "10.0.0.1", "ha", "ha1")
    _run(*pki, "issue-mn", "--ha", "ha1", "--out", str(tmp_path / "mn.card"), "mn")
    code, _ = _run(*pki, "rotate", "mn")
    assert code == 1 and "--out" in capsys.readouterr().err
    code, _ = _run(*pki, "rotate", "--out", str(tmp_path / "mn2.card"), "mn")
    assert code == 0 and (tmp_path / "mn2.card").exists()
