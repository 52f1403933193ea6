"""The HA-FA tunnel (draft section 8; docs/protocol.md 8.2): the framed TCP connection
(:mod:`mvpn.tunnel.protocol`), the HA's reconnecting client (:mod:`mvpn.tunnel.client`) and
the buffer that keeps frames while the tunnel is down (:mod:`mvpn.tunnel.buffer`)."""
