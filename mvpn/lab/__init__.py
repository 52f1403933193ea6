"""The MVPN lab: real roles in Linux network namespaces (issue 5's namespace test, `make lab`).

``mvpn.lab.netns`` builds the topology (namespaces, veth pairs, a router) with the ``ip`` tool;
``mvpn.lab.deploy`` provisions the two domains and starts every role as its own ``twistd``
process in its namespace (it asks them for their status over their control sockets, and
runs no reactor itself); ``python -m mvpn.lab`` is ``make lab``.
"""
