"""A TUN device in memory, for tests of whatever reads from or writes to one."""

from __future__ import annotations

from collections.abc import Callable

from zope.interface import implementer  # type: ignore[import-untyped]

from mvpn.roles.tun import ITunDevice


@implementer(ITunDevice)
class FakeTunDevice:
    """An :class:`ITunDevice` with no kernel behind it.

    ``written`` lists the packets given to :meth:`write` (what the kernel would have
    received); :meth:`inject` plays a packet the kernel routed into the device, handing it to
    ``on_packet``. With ``accept`` False, writes are refused (a full queue).
    """

    def __init__(self, name: str = "mvpn-fake0") -> None:
        self.name = name
        self.on_packet: Callable[[bytes], None] | None = None
        self.written: list[bytes] = []
        self.accept = True

    def write(self, packet: bytes) -> bool:
        """Record ``packet``; False (and not recorded) when ``accept`` is False."""
        if not self.accept:
            return False
        self.written.append(bytes(packet))
        return True

    def inject(self, packet: bytes) -> None:
        """The kernel routed ``packet`` into the device: give it to the reader callback."""
        if self.on_packet is not None:
            self.on_packet(packet)
