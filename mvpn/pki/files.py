"""Writing and reading the PKI's files: private keys 0600, public files 0644, atomically.

A private key file holds two PEM PKCS#8 blocks, the Ed25519 key then the X25519 key, each
encrypted with the password when there is one (``BestAvailableEncryption``). Files are
written to a temporary name in the same directory and renamed, so a crash never leaves half a
key; private files are created 0600 from the start (never chmod'ed after the write).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from mvpn.crypto.keys import PrivateKeys
from mvpn.pki.errors import MissingFile, PkiError, WrongPassword

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644

_PEM_BLOCK = re.compile(rb"-----BEGIN [A-Z ]+-----.+?-----END [A-Z ]+-----\n?", re.DOTALL)


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically, created with ``mode`` (umask notwithstanding)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits we want (0644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def read_file(path: Path, what: str) -> bytes:
    """Read ``path``; :class:`MissingFile` naming ``what`` when it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise MissingFile(f"{what} {str(path)!r} does not exist") from None


def private_keys_to_pem(keys: PrivateKeys, password: bytes | None) -> bytes:
    """The two PEM blocks of a private key file."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    fmt = serialization.PrivateFormat.PKCS8
    enc = serialization.Encoding.PEM
    return keys.signing.private_bytes(enc, fmt, encryption) + keys.kem.private_bytes(
        enc, fmt, encryption
    )


def private_keys_from_pem(data: bytes, password: bytes | None, where: str) -> PrivateKeys:
    """Parse a private key file's contents; :class:`WrongPassword` or :class:`PkiError`."""
    blocks = _PEM_BLOCK.findall(data)
    if len(blocks) != 2:
        raise PkiError(f"{where}: expected two PEM private keys (Ed25519, X25519)")
    encrypted = b"ENCRYPTED" in blocks[0]
    if encrypted and not password:
        raise WrongPassword(f"{where}: the key is encrypted; a password is needed")
    try:
        signing = serialization.load_pem_private_key(blocks[0], password if encrypted else None)
        kem = serialization.load_pem_private_key(blocks[1], password if encrypted else None)
    except ValueError as e:
        if encrypted:
            raise WrongPassword(f"{where}: wrong password") from e
        raise PkiError(f"{where}: not a private key: {e}") from e
    except TypeError as e:
        raise PkiError(f"{where}: {e}") from e
    if not isinstance(signing, ed25519.Ed25519PrivateKey) or not isinstance(
        kem, x25519.X25519PrivateKey
    ):
        raise PkiError(f"{where}: expected an Ed25519 then an X25519 private key")
    return PrivateKeys(signing, kem)


def write_private_keys(path: Path, keys: PrivateKeys, password: bytes | None) -> None:
    """Write a private key file, mode 0600."""
    write_file(path, private_keys_to_pem(keys, password), PRIVATE_MODE)


def read_private_keys(path: Path, password: bytes | None = None) -> PrivateKeys:
    """Read a private key file written by :func:`write_private_keys`."""
    return private_keys_from_pem(read_file(path, "private key file"), password, str(path))
