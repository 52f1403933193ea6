"""The correspondent node role: ``twistd mvpn-cn`` (draft 3.4, 3.5 and 6)."""
