"""The registration keys the HA creates at a first contact (draft 3.2.1.2; docs/protocol.md
5.3, 6 and 11).

The draft's "Ses Key" and "Auth Key" are shared by the MN, its FA and its HA for the life of
the registration: the Ses Key (32 bytes, AES-256-GCM) protects the key refresh and the key
transfer (:func:`mvpn.crypto.aead.seal_symmetric`); the Auth Key (32 bytes, HMAC-SHA256)
authenticates re-registrations, Hello values and acknowledgements. Together with their SPI
they form the registration security association.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mvpn.crypto.auth import FIRST_REGISTRATION_SA_SPI, MAX_SPI
from mvpn.crypto.errors import KeyFormatError
from mvpn.crypto.random import RandomSource

__all__ = ["REGISTRATION_KEY_SIZE", "RegistrationKeys"]

REGISTRATION_KEY_SIZE = 32
"""Both registration keys are 256 bits (AES-256-GCM and HMAC-SHA256)."""


@dataclass(frozen=True, repr=False)
class RegistrationKeys:
    """A registration security association: SPI, Ses Key, Auth Key and their lifetime.

    ``created_at`` and ``lifetime`` are seconds on the caller's clock (the sans-IO core is
    given ``now``; it never reads a clock itself). The repr names the SPI and times only.
    """

    spi: int
    ses_key: bytes = field(repr=False)
    auth_key: bytes = field(repr=False)
    created_at: float
    lifetime: float

    def __post_init__(self) -> None:
        if not FIRST_REGISTRATION_SA_SPI <= self.spi <= MAX_SPI:
            raise ValueError(
                f"registration SPI must be in [{FIRST_REGISTRATION_SA_SPI}, {MAX_SPI}] "
                f"(0-255 are reserved by RFC 5944, 256 is the first-contact SPI), got {self.spi}"
            )
        for name in ("ses_key", "auth_key"):
            size = len(getattr(self, name))
            if size != REGISTRATION_KEY_SIZE:
                raise KeyFormatError(
                    f"registration {name}: expected {REGISTRATION_KEY_SIZE} bytes, got {size}"
                )
        if not self.lifetime > 0:
            raise ValueError(f"registration key lifetime must be positive, got {self.lifetime}")

    @classmethod
    def generate(
        cls,
        random: RandomSource,
        spi: int,
        now: float,
        lifetime: float,
    ) -> RegistrationKeys:
        """Fresh keys for ``spi`` from ``random``, valid from ``now`` for ``lifetime`` seconds."""
        ses_key = random(REGISTRATION_KEY_SIZE)
        auth_key = random(REGISTRATION_KEY_SIZE)
        return cls(spi, ses_key, auth_key, now, lifetime)

    @property
    def expires_at(self) -> float:
        """The first instant at which the keys are no longer valid."""
        return self.created_at + self.lifetime

    def expired(self, now: float) -> bool:
        """True from :attr:`expires_at` on."""
        return now >= self.expires_at

    def __repr__(self) -> str:
        return (
            f"<RegistrationKeys spi={self.spi} created_at={self.created_at} "
            f"lifetime={self.lifetime}>"
        )
