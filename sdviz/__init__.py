"""sdviz: see inside Stable Diffusion.

The public names load on first use (PEP 562), so `import sdviz.trace` or `sdviz --help` stays free of
diffusers and transformers.
"""

import importlib
import logging as _logging

from sdviz._version import __version__

# transformers warns at import that torchvision is missing (sdviz never needs it); keep our output clean.
_logging.getLogger("transformers.utils.import_utils").setLevel(_logging.ERROR)

# public name -> the module that defines it
_LAZY = {
    "capture": "sdviz.capturing",
    "generate": "sdviz.capturing",
    "compare": "sdviz.comparison",
    "load_comparison": "sdviz.comparison",
    "ModuleDiff": "sdviz.module_diff",
    "compare_modules": "sdviz.module_diff",
    "swap": "sdviz.models.adapters",
    "load_pipeline": "sdviz.pipeline",
    "load_tokenizer": "sdviz.tokenizer",
    "token_info": "sdviz.tokenizer",
    "Step": "sdviz.trace",
    "Trace": "sdviz.trace",
    "TokenInfo": "sdviz.tokens",
    "UsageError": "sdviz.validation",
}
_SUBMODULES = ("schedulers",)

__all__ = [
    "ModuleDiff", "Step", "TokenInfo", "Trace", "UsageError", "__version__", "capture", "compare", "compare_modules", "generate",
    "load_comparison", "load_pipeline", "load_tokenizer", "schedulers", "swap", "token_info",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"sdviz.{name}")
    else:
        raise AttributeError(f"module 'sdviz' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
