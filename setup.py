"""Build glue for zenws' optional C accelerator; all metadata lives in pyproject.toml.

``zenws_core._speedups`` (the RFC 6455 masking XOR in C) is built when a C compiler is
available.  When it is not, or the build fails for any reason, the install still succeeds
and zenws_core uses its pure-Python masking (same results, slower for large messages).
Set ``ZENWS_NO_EXTENSIONS=1`` to skip the build on purpose.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """``build_ext`` that warns instead of failing when the extension cannot be built."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, missing headers, ...
            self._skip(exc)

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._skip(exc)

    @staticmethod
    def _skip(exc: BaseException) -> None:
        print(
            f"warning: zenws_core._speedups was not built ({exc}); "
            "zenws will use pure-Python masking",
            file=sys.stderr,
        )


ext_modules = []
if os.environ.get("ZENWS_NO_EXTENSIONS", "") in ("", "0") and sys.implementation.name == "cpython":
    ext_modules.append(
        Extension(
            "zenws_core._speedups",
            sources=["zenws_core/_speedups.c"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
