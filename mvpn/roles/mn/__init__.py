"""The mobile node's Twisted shell: ``twistd mvpn-mn`` (draft 3.1-3.3, RFC 5944 3.6)."""
