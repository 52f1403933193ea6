"""The MVPN lab: real roles in Linux network namespaces (issue 5's namespace test, `make lab`).

``mvpn.lab.netns`` builds the topology (namespaces, veth pairs, a router) with the ``ip`` tool.
Nothing here imports Twisted: the lab starts the roles as separate ``twistd`` processes.
"""
