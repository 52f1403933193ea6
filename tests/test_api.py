"""The in-process application API (issue 5, "Applications on top"): mvpn.api.MvpnClient
over a fake endpoint, with the tests' FakeTunDevice as the sink for non-API packets."""

from __future__ import annotations

import ipaddress

import pytest
from twisted.internet.defer import CancelledError
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer  # type: ignore[import-untyped]
from zope.interface.verify import verifyObject  # type: ignore[import-untyped]

from mvpn.api import (
    API_PORT,
    EVENT_METHODS,
    MAX_API_PAYLOAD,
    IMvpnApplication,
    MvpnClient,
)
from mvpn.core.effects import Event
from mvpn.wire import inner
from mvpn.wire.icmp import internet_checksum
from tests.roles.tun_fakes import FakeTunDevice

A = ipaddress.IPv4Address
MN = A("10.50.0.7")
CN = A("192.0.2.10")
OTHER_CN = A("192.0.2.11")


class FakeEndpoint:
    """Records what the client sends; ``accept`` decides the answer of send_inner."""

    def __init__(self) -> None:
        self.sent: list[tuple[ipaddress.IPv4Address, bytes]] = []
        self.accept = True

    def send_inner(self, peer: ipaddress.IPv4Address, packet: bytes) -> bool:
        if not self.accept:
            return False
        self.sent.append((peer, packet))
        return True


@implementer(IMvpnApplication)
class RecordingApplication:
    """An IMvpnApplication that records every call; ``fail`` makes data_received raise."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, object]] = []
        self.fail = fail

    def session_started(self, info: Event) -> None:
        self.calls.append(("session_started", info))

    def data_received(self, peer: ipaddress.IPv4Address, data: bytes) -> None:
        self.calls.append(("data_received", (peer, data)))
        if self.fail:
            raise RuntimeError("application bug")

    def session_ended(self, info: Event) -> None:
        self.calls.append(("session_ended", info))

    def moved(self, info: Event) -> None:
        self.calls.append(("moved", info))


class LoopEndpoint:
    """Delivers what one client sends to the other client's inner_received, as two
    endpoints joined by a session would."""

    def __init__(self) -> None:
        self.far: MvpnClient | None = None

    def send_inner(self, peer: ipaddress.IPv4Address, packet: bytes) -> bool:
        assert self.far is not None
        self.far.inner_received(packet)
        return True


def _api_packet(src: A, dst: A, data: bytes, dst_port: int = API_PORT) -> bytes:
    return inner.build_udp(src, dst, API_PORT, dst_port, data)


class SendTests(SynchronousTestCase):
    """send() and send_packet()."""

    def test_send_wraps_data_in_ipv4_udp_to_api_port(self) -> None:
        """send() gives the endpoint one IPv4/UDP packet from this node's address to the
        peer, both ports API_PORT, carrying the data; its answer is send()'s."""
        endpoint = FakeEndpoint()
        client = MvpnClient(endpoint, MN)
        self.assertTrue(client.send(CN, b"hello"))
        ((peer, packet),) = endpoint.sent
        self.assertEqual(peer, CN)
        self.assertEqual(
            inner.UdpPacket.decode(packet), inner.UdpPacket(MN, CN, API_PORT, API_PORT, b"hello")
        )
        endpoint.accept = False
        self.assertFalse(client.send(CN, b"again"))
        self.assertEqual(client.counters.snapshot(), {"send.refused": 1, "sent": 1})

    def test_send_uses_a_new_identification_per_datagram(self) -> None:
        """Consecutive datagrams carry different IPv4 Identifications."""
        endpoint = FakeEndpoint()
        client = MvpnClient(endpoint, MN)
        client.send(CN, b"a")
        client.send(CN, b"b")
        idents = {inner.IPv4Header.decode(p).identification for _, p in endpoint.sent}
        self.assertEqual(len(idents), 2)

    def test_oversize_data_is_a_value_error(self) -> None:
        """1372 bytes fit one datagram (a 1400-byte inner packet); one more is refused with
        a ValueError that says the limit, and nothing is sent."""
        endpoint = FakeEndpoint()
        client = MvpnClient(endpoint, MN)
        self.assertTrue(client.send(CN, bytes(MAX_API_PAYLOAD)))
        self.assertEqual(len(endpoint.sent[0][1]), 1400)
        with pytest.raises(ValueError, match=r"1373 bytes do not fit.*at most 1372"):
            client.send(CN, bytes(MAX_API_PAYLOAD + 1))
        self.assertEqual(len(endpoint.sent), 1)

    def test_send_packet_routes_by_destination(self) -> None:
        """send_packet() (a TUN device's reader) sends a whole packet to its destination;
        a malformed one is dropped and counted."""
        endpoint = FakeEndpoint()
        client = MvpnClient(endpoint, MN)
        packet = inner.build_udp(MN, OTHER_CN, 5000, 53, b"query")
        self.assertTrue(client.send_packet(packet))
        self.assertEqual(endpoint.sent, [(OTHER_CN, packet)])
        self.assertFalse(client.send_packet(b"\x60" + bytes(39)))
        self.assertEqual(client.counters.get("drops.malformed"), 1)


class ReceiveTests(SynchronousTestCase):
    """receive(), the queue, and the other sink."""

    def test_receive_waits_then_fires(self) -> None:
        """receive() before the datagram arrives fires when it does, with its payload."""
        client = MvpnClient(FakeEndpoint(), MN)
        d = client.receive(CN)
        self.assertNoResult(d)
        client.inner_received(_api_packet(CN, MN, b"hi"))
        self.assertEqual(self.successResultOf(d), b"hi")
        self.assertEqual(client.queued, 0)

    def test_queued_datagrams_are_kept_per_peer_in_order(self) -> None:
        """Datagrams that arrive before receive() wait, per peer, in arrival order."""
        client = MvpnClient(FakeEndpoint(), MN)
        client.inner_received(_api_packet(CN, MN, b"1"))
        client.inner_received(_api_packet(OTHER_CN, MN, b"x"))
        client.inner_received(_api_packet(CN, MN, b"2"))
        self.assertEqual(client.queued, 3)
        self.assertEqual(self.successResultOf(client.receive(CN)), b"1")
        self.assertEqual(self.successResultOf(client.receive(OTHER_CN)), b"x")
        self.assertEqual(self.successResultOf(client.receive(CN)), b"2")
        self.assertNoResult(client.receive(CN))

    def test_cancelled_receive_is_withdrawn(self) -> None:
        """A cancelled receive() fails with CancelledError and no longer takes data: the
        next datagram is queued."""
        client = MvpnClient(FakeEndpoint(), MN)
        d = client.receive(CN)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        client.inner_received(_api_packet(CN, MN, b"later"))
        self.assertEqual(client.queued, 1)

    def test_queue_is_bounded_and_overflow_counted(self) -> None:
        """Beyond queue_limit datagrams are dropped and counted; one warning per streak,
        and an info line with the total when datagrams are accepted again."""
        client = MvpnClient(FakeEndpoint(), MN, queue_limit=2)
        with capturedLogs() as events:
            for n in range(5):
                client.inner_received(_api_packet(CN, MN, b"%d" % n))
            self.assertEqual(self.successResultOf(client.receive(CN)), b"0")
            client.inner_received(_api_packet(CN, MN, b"5"))
        self.assertEqual(client.counters.get("receive.overflow"), 3)
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertTrue(any(e.get("count") == 3 for e in events))
        self.assertEqual(self.successResultOf(client.receive(CN)), b"1")
        self.assertEqual(self.successResultOf(client.receive(CN)), b"5")

    def test_non_api_packets_go_to_the_tun_device(self) -> None:
        """Inner packets that are not UDP to API_PORT at this node's address (another port,
        another destination, TCP) go to the other sink unchanged; without a sink they are
        dropped and counted; malformed packets are dropped and counted either way."""
        tun = FakeTunDevice()
        client = MvpnClient(FakeEndpoint(), MN, other=tun.write)
        other_port = _api_packet(CN, MN, b"dns", dst_port=53)
        other_dst = _api_packet(CN, A("10.50.0.8"), b"not me")
        tcp = bytearray(_api_packet(CN, MN, b"tcp"))
        tcp[9] = 6
        tcp[10:12] = b"\0\0"
        tcp[10:12] = internet_checksum(bytes(tcp[:20])).to_bytes(2, "big")
        for packet in (other_port, other_dst, bytes(tcp)):
            client.inner_received(packet)
        self.assertEqual(tun.written, [other_port, other_dst, bytes(tcp)])
        self.assertEqual(client.queued, 0)
        client.inner_received(b"\x45garbage")
        self.assertEqual(client.counters.get("drops.malformed"), 1)
        alone = MvpnClient(FakeEndpoint(), MN)
        alone.inner_received(other_port)
        self.assertEqual(alone.counters.get("drops.no_sink"), 1)

    def test_bad_udp_checksum_to_api_port_is_dropped(self) -> None:
        """An API datagram whose UDP checksum is wrong is dropped, not delivered."""
        client = MvpnClient(FakeEndpoint(), MN)
        packet = bytearray(_api_packet(CN, MN, b"data"))
        packet[-1] ^= 0xFF
        client.inner_received(bytes(packet))
        self.assertEqual(client.queued, 0)
        self.assertEqual(client.counters.get("drops.malformed"), 1)


class ApplicationTests(SynchronousTestCase):
    """register(), event(), wait_for()."""

    def test_registered_application_gets_data_and_events(self) -> None:
        """A registered application gets each datagram (with its peer) and the events its
        methods stand for; with an application registered, nothing is queued."""
        client = MvpnClient(FakeEndpoint(), MN)
        app = RecordingApplication()
        self.assertTrue(verifyObject(IMvpnApplication, app))
        client.register(app)
        client.register(app)  # twice is once
        established = Event("session-established", {"spi": 300, "cn": str(CN)})
        expired = Event("session-expired", {"spi": 300, "cn": str(CN)})
        moved = Event("moved", {"home_address": str(MN)})
        unrelated = Event("keys-transferred", {"fa": "10.0.0.1", "spis": (300,)})
        for event in (established, unrelated, moved):
            client.event(event)
        client.inner_received(_api_packet(CN, MN, b"data"))
        client.event(expired)
        self.assertEqual(
            app.calls,
            [
                ("session_started", established),
                ("moved", moved),
                ("data_received", (CN, b"data")),
                ("session_ended", expired),
            ],
        )
        self.assertEqual(client.queued, 0)
        client.unregister(app)
        client.inner_received(_api_packet(CN, MN, b"queued now"))
        self.assertEqual(client.queued, 1)

    def test_event_methods_cover_the_application_interface(self) -> None:
        """Every IMvpnApplication method except data_received is reached by some event."""
        methods = set(IMvpnApplication.names()) - {"data_received"}
        self.assertEqual(set(EVENT_METHODS.values()), methods)

    def test_application_errors_do_not_stop_delivery(self) -> None:
        """An application that raises is counted; the others and receive() still get
        the datagram."""
        client = MvpnClient(FakeEndpoint(), MN)
        broken, good = RecordingApplication(fail=True), RecordingApplication()
        client.register(broken)
        client.register(good)
        d = client.receive(CN)
        client.inner_received(_api_packet(CN, MN, b"x"))
        self.assertEqual(good.calls, [("data_received", (CN, b"x"))])
        self.assertEqual(self.successResultOf(d), b"x")
        self.assertEqual(client.counters.get("application_errors"), 1)
        self.flushLoggedErrors(RuntimeError)

    def test_register_refuses_non_applications(self) -> None:
        """register() insists on an IMvpnApplication provider."""
        client = MvpnClient(FakeEndpoint(), MN)
        with pytest.raises(TypeError, match="IMvpnApplication"):
            client.register(object())

    def test_wait_for_matches_name_and_fields(self) -> None:
        """wait_for() fires with the first later event of that name whose fields match
        (equal, or equal as text); others leave it waiting."""
        client = MvpnClient(FakeEndpoint(), MN)
        client.event(Event("session-established", {"spi": 1, "cn": CN}))
        d = client.wait_for("session-established", cn=str(OTHER_CN))
        any_move = client.wait_for("moved")
        client.event(Event("session-established", {"spi": 2, "cn": CN}))
        client.event(Event("session-refused", {"cn": OTHER_CN}))
        self.assertNoResult(d)
        wanted = Event("session-established", {"spi": 3, "cn": OTHER_CN})
        client.event(wanted)
        self.assertIs(self.successResultOf(d), wanted)
        self.assertNoResult(any_move)
        client.event(Event("moved", {}))
        self.assertEqual(self.successResultOf(any_move).name, "moved")

    def test_wait_for_missing_field_and_cancel(self) -> None:
        """A field the event lacks never matches; a cancelled wait is withdrawn."""
        client = MvpnClient(FakeEndpoint(), MN)
        d = client.wait_for("moved", fa="10.0.0.1")
        client.event(Event("moved", {"care_of": "10.0.0.1"}))
        self.assertNoResult(d)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        client.event(Event("moved", {"fa": "10.0.0.1"}))


def test_two_nodes_exchange_datagrams_beside_tun_traffic() -> None:
    """An MN client and a CN client joined back to back: API datagrams go both ways to
    the applications, while a TUN packet sent by the CN reaches the MN's TUN device."""
    mn_loop, cn_loop = LoopEndpoint(), LoopEndpoint()
    mn_tun = FakeTunDevice()
    mn = MvpnClient(mn_loop, MN, other=mn_tun.write)
    cn = MvpnClient(cn_loop, CN)
    mn_loop.far, cn_loop.far = cn, mn
    mn_app = RecordingApplication()
    mn.register(mn_app)
    replies: list[bytes] = []
    cn.receive(MN).addCallback(replies.append)
    assert cn.send(MN, b"request")
    assert mn_app.calls == [("data_received", (CN, b"request"))]
    assert mn.send(CN, b"response")
    assert replies == [b"response"]
    ping = inner.build_udp(CN, MN, 40000, 7, b"tun traffic")
    assert cn.send_packet(ping)
    assert mn_tun.written == [ping]
