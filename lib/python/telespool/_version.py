"""The binding's version.

CMakeLists.txt's ``project(telespool VERSION ...)`` is the one place the version is set.  This
file is what a source checkout imports: it reads that line.  An installed binding (the wheel,
``cmake --install``, the .deb) has this file replaced by one with the version written in.
"""

import os
import re


def _from_cmakelists() -> str:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    try:
        with open(os.path.join(root, "CMakeLists.txt"), encoding="utf-8") as f:
            m = re.search(r"^project\(telespool\s+VERSION\s+([0-9][0-9.]*)", f.read(), re.M)
    except OSError:
        m = None
    return m.group(1) if m else "0+unknown"


__version__ = _from_cmakelists()
