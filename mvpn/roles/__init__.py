"""The Twisted shells of the five MVPN roles: MN, FA, HA, CN and the Trusted Centre (TC).

Each role is a ``MultiService`` built by ``build_<role>_service(config, reactor)`` and
exposed as a twistd plugin (``twistd mvpn-<role>``) and a ``.tac`` file.
"""
