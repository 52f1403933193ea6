"""Installs mvpn: the package, the ``mvpn`` console script and the twistd plugins."""

from setuptools import find_packages, setup

setup(
    name="mvpn",
    version="0.1.0",
    description="Mobile Virtual Private Network (draft-sanchez-mvpn-00) on Twisted",
    python_requires=">=3.11",
    packages=[*find_packages(include=["mvpn", "mvpn.*"]), "twisted.plugins"],
    install_requires=[
        "twisted>=26.10",
        "cryptography>=50",
        "pyopenssl>=26.4",
        "service-identity>=26.1",
        "zope.interface>=8",
        "automat>=25.4",
    ],
    entry_points={"console_scripts": ["mvpn = mvpn.cli:main"]},
)
