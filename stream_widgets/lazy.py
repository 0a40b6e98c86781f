"""Packages whose public names are imported on first use, so that importing a package stays cheap (no
torch, no Bokeh, no spaCy until a name that needs them is asked for)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import import_module
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, names: Mapping[str, str], exported: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of `package`.

    Args:
        package: The package's ``__name__``.
        names: Public name -> the module that defines it; imported on first access, then kept in the
            package's namespace.
        exported: What ``dir(package)`` lists (its ``__all__``).
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            value = getattr(import_module(names[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(exported)

    return __getattr__, __dir__
