"""The foreign agent's Twisted shell: ``twistd mvpn-fa`` (draft 3.2, RFC 5944 3.7)."""
