"""omi-adapters-triton has the version of omi-adapters and depends on exactly that omi-adapters.

The version is set in one place, ``__version__`` in omi_adapters/__init__.py; an sdist carries it
in its PKG-INFO, since the repository around it is gone when its wheel is built.
"""

import re
from email.parser import Parser
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def version() -> str:
    pkg_info = HERE / "PKG-INFO"
    if pkg_info.is_file():
        return str(Parser().parsestr(pkg_info.read_text(encoding="utf-8"))["Version"])
    init = (HERE.parent.parent / "omi_adapters" / "__init__.py").read_text(encoding="utf-8")
    found = re.search(r'^__version__ = "([^"]+)"$', init, flags=re.MULTILINE)
    if found is None:
        raise RuntimeError("no __version__ in omi_adapters/__init__.py")
    return found.group(1)


VERSION = version()
setup(version=VERSION, install_requires=[f"omi-adapters=={VERSION}"])
