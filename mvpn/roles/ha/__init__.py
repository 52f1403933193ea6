"""The home agent's Twisted shell: ``twistd mvpn-ha`` (draft 3.2, RFC 5944 3.8)."""
