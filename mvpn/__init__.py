"""mvpn: the Mobile Virtual Private Network (draft-sanchez-mvpn-00) on Twisted.

Layers, from the bottom (dependencies point one way only):

- :mod:`mvpn.wire`: pure codecs, bytes to frozen values and back (no Twisted).
- :mod:`mvpn.crypto`: the cryptographic suite, authenticators and replay windows.
- ``mvpn.core``: sans-IO role logic; ``mvpn.roles`` and ``mvpn.tunnel``: the Twisted shells.
"""

__version__ = "0.1.0"
