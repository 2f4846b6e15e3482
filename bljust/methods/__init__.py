"""Training methods: each says what one step does; the trainer owns the loop.

Every module here is imported, so each method registers itself (bljust/methods/base.py): adding a
method is one new module and one `conf/method/<name>.yaml`, nothing else.
"""

import importlib
import pkgutil

from bljust.methods.base import METHODS, Method, StepOutput, TrainContext

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")


def build_method(ctx: TrainContext) -> Method:
    return METHODS[ctx.cfg.method.name](ctx)


__all__ = ["METHODS", "Method", "StepOutput", "TrainContext", "build_method"]
