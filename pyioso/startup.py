"""Run by path at every interpreter start in the project venv (its pyioso-torchvision.pth, written
by scripts/setup_venv.sh): a plain `import torchvision` then works there, as it does after
pyioso.models.tv (see that module for why it would fail). Nothing is imported until torchvision
is, torch and pyioso included: the hook only waits for that import and defines the operator
schemas just before it."""

import importlib.abc
import sys


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            sys.meta_path.remove(self)
            from pyioso.models.tv import define_schemas

            define_schemas()
        return None             # the ordinary finders import it


if not any(type(f).__name__ == _BeforeTorchvision.__name__ for f in sys.meta_path):
    sys.meta_path.insert(0, _BeforeTorchvision())
