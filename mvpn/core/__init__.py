"""The sans-IO core of the MVPN roles.

Nothing here opens a socket, reads a clock or touches the reactor: every method takes its input
(datagram bytes, the source address, ``now``) and returns a list of
:mod:`~mvpn.core.effects` that the Twisted shell in :mod:`mvpn.roles` performs in order.
"""
