"""Names of a package imported on first use (PEP 562), so that importing the package stays cheap."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module


def lazy_names(namespace: dict, names: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module-level `__getattr__` and `__dir__` of the package whose globals are `namespace`:
    `names` maps each name to the module (relative to the package) it is imported from on first use; the
    value is then kept in the package's globals."""
    package = namespace["__name__"]

    def __getattr__(name: str):
        if name in names:
            value = getattr(import_module(names[name], package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
