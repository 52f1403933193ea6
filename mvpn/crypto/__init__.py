"""The cryptographic suite of mvpn: signing, sealing, authenticators, replay windows.

The draft's notation maps onto these operations (see docs/protocol.md, "Cryptography"):
``E_Kr_X[m]`` is "X signs m", ``E_Ku_X[m]`` is "m is sealed to X with HPKE".

- :mod:`mvpn.crypto.suite`: :func:`sign`, :func:`verify`, :func:`seal`, :func:`open_sealed`
  and the two nestings (:func:`sign_then_seal`, :func:`seal_then_sign`).
- :mod:`mvpn.crypto.auth`: registration authenticators (HMAC-MD5 for plain RFC 5944 nodes,
  HMAC-SHA256 for MVPN) and the data-flow :class:`HopAuthenticator`.
- :mod:`mvpn.crypto.aead`: the data-flow :class:`DataCipher` and the symmetric seal.
- :mod:`mvpn.crypto.dh`: the CN-MN Diffie-Hellman (X25519, or an RFC 7919 group) and the
  data keys.
- :mod:`mvpn.crypto.replay`: the data-flow :class:`ReplayWindow`.
- :mod:`mvpn.crypto.negotiation`: Sec Par flags and the algorithm choice.
- :mod:`mvpn.crypto.session`: the registration :class:`RegistrationKeys`.

Nothing here imports Twisted, logs, or puts key bytes into a ``repr``.
"""

from mvpn.crypto.aead import (
    AEAD_TAG_SIZE,
    DATA_KEY_SIZE,
    SYMMETRIC_OVERHEAD,
    DataCipher,
    data_nonce,
    open_symmetric,
    seal_symmetric,
)
from mvpn.crypto.auth import (
    FIRST_CONTACT_SPI,
    FIRST_REGISTRATION_SA_SPI,
    HOP_TAG_SIZE,
    MAX_SPI,
    RESERVED_SPI_MAX,
    AuthenticatorAlgorithm,
    HopAuthenticator,
    check_authenticator,
    compute_authenticator,
    hmac_md5_authenticator,
    hmac_sha256_128,
    hmac_sha256_authenticator,
    spi_is_reserved,
)
from mvpn.crypto.dh import (
    DataKeys,
    DhGroup,
    DhKeyPair,
    data_key_transcript,
    derive_data_keys,
    group_from_params,
)
from mvpn.crypto.errors import (
    CryptoError,
    DecryptionError,
    KeyFormatError,
    UnsupportedAlgorithmError,
    VerificationError,
)
from mvpn.crypto.keys import PUBLIC_KEYS_SIZE, PrivateKeys, PublicKeys
from mvpn.crypto.negotiation import (
    LOCAL_FLAGS,
    check_auth_code,
    check_encr_code,
    decode_flags,
    describe_offer,
    encode_flags,
    negotiate,
)
from mvpn.crypto.random import RandomSource, SeededRandom, system_random
from mvpn.crypto.replay import ReplayError, ReplayReason, ReplayWindow
from mvpn.crypto.session import REGISTRATION_KEY_SIZE, RegistrationKeys
from mvpn.crypto.suite import (
    SEAL_OVERHEAD,
    SIGNATURE_SIZE,
    open_sealed,
    open_then_verify,
    seal,
    seal_then_sign,
    sign,
    sign_then_seal,
    verify,
    verify_then_open,
)

__all__ = [
    "AEAD_TAG_SIZE",
    "DATA_KEY_SIZE",
    "FIRST_CONTACT_SPI",
    "FIRST_REGISTRATION_SA_SPI",
    "HOP_TAG_SIZE",
    "LOCAL_FLAGS",
    "MAX_SPI",
    "PUBLIC_KEYS_SIZE",
    "REGISTRATION_KEY_SIZE",
    "RESERVED_SPI_MAX",
    "SEAL_OVERHEAD",
    "SIGNATURE_SIZE",
    "SYMMETRIC_OVERHEAD",
    "AuthenticatorAlgorithm",
    "CryptoError",
    "DataCipher",
    "DataKeys",
    "DecryptionError",
    "DhGroup",
    "DhKeyPair",
    "HopAuthenticator",
    "KeyFormatError",
    "PrivateKeys",
    "PublicKeys",
    "RandomSource",
    "RegistrationKeys",
    "ReplayError",
    "ReplayReason",
    "ReplayWindow",
    "SeededRandom",
    "UnsupportedAlgorithmError",
    "VerificationError",
    "check_auth_code",
    "check_authenticator",
    "check_encr_code",
    "compute_authenticator",
    "data_key_transcript",
    "data_nonce",
    "decode_flags",
    "derive_data_keys",
    "describe_offer",
    "encode_flags",
    "group_from_params",
    "hmac_md5_authenticator",
    "hmac_sha256_128",
    "hmac_sha256_authenticator",
    "negotiate",
    "open_sealed",
    "open_symmetric",
    "open_then_verify",
    "seal",
    "seal_symmetric",
    "seal_then_sign",
    "sign",
    "sign_then_seal",
    "spi_is_reserved",
    "system_random",
    "verify",
    "verify_then_open",
]
