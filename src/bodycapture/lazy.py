"""Imports made cheap: names of a package imported on first use (PEP 562), so that importing the package stays
cheap; and torch imported without the modules only its tracers and compilers read, for the `bodycapture` command."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import import_module

# torch modules that `import torch` runs but that only torch's tracers and compilers read (torch.compile,
# torch.export, fake and meta tensors): they register Python kernels for the "meta" device and pull in torch._decomp
# and torch._refs. Measured 2026-12-03 (AMD VM, torch 2.13.0): `import torch` 1.54-1.62 s, without them 1.19-1.47 s
# (docs/benchmarks.md, "The first result")
TRACING_MODULES = ("torch._meta_registrations", "torch.distributed._meta_registrations")


def bind_generator_metaclass() -> None:
    """What importing TRACING_MODULES does that computing needs: torch.Generator() raises until the Generator's
    metaclass is bound, which torch._prims.rng_prims does (torch._C leaves it to Python). Done here alone, not by
    importing torch._prims (which registers every primitive op for the tracers: 0.2 s of `import torch`)."""
    import torch
    from torch._opaque_base import OpaqueBaseMeta

    torch._C._set_generator_metaclass(OpaqueBaseMeta)


# the torch release this was verified with (the pin in pyproject.toml; tests/test_lazy.py): another torch is
# imported whole, since what its import needs may have moved
VERIFIED_TORCH = "2.13.0"


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


class _StandIns(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Empty modules for TRACING_MODULES while torch is imported; the first one made binds the Generator's
    metaclass (where the real module's import would have, within `import torch`)."""

    def __init__(self):
        self.made: dict[str, types.ModuleType] = {}

    def find_spec(self, name, path=None, target=None):
        if name not in TRACING_MODULES:
            return None
        version = str(getattr(sys.modules.get("torch"), "__version__", ""))  # set early in torch/__init__.py
        if version.split("+")[0] != VERIFIED_TORCH:  # (a local build's suffix, "+cu126", is the same release)
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec):
        return None  # the default: an empty module

    def exec_module(self, module):
        first = not self.made
        self.made[module.__name__] = module
        if first:
            bind_generator_metaclass()


@contextmanager
def torch_without_tracing() -> Iterator[None]:
    """Within the block, a first `import torch` skips TRACING_MODULES: empty modules stand in for them. For a
    process that only computes (eager torch, on any device) and never traces, compiles or makes meta tensors:
    the `bodycapture` command (cli.run), which ends with the block, never a library user's process. Within the
    block torch.compile is unavailable (torch._dynamo's import needs the real modules); torch.testing, torch._decomp
    and torch._refs import. Leaving the block removes the stand-ins: importing TRACING_MODULES afterwards loads them
    for real, and torch's tracers then work, provided torch._meta_registrations is imported first, before
    torch._decomp, torch._refs or torch._dynamo, as `import torch` does (they import each other in a cycle that
    only that order resolves). Does nothing where torch is already imported."""
    if "torch" in sys.modules:
        yield
        return
    stand_ins = _StandIns()
    sys.meta_path.insert(0, stand_ins)
    try:
        yield
    finally:
        sys.meta_path.remove(stand_ins)
        for name, module in stand_ins.made.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
            parent, _, child = name.rpartition(".")
            if getattr(sys.modules.get(parent), child, None) is module:
                delattr(sys.modules[parent], child)
