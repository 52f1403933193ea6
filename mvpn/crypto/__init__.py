"""The cryptographic suite of mvpn: signing, sealing, authenticators, replay windows.

The draft's notation maps onto these operations (see docs/protocol.md, "Cryptography"):
``E_Kr_X[m]`` is "X signs m", ``E_Ku_X[m]`` is "m is sealed to X with HPKE".
"""
