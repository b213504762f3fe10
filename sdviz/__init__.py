"""sdviz: see inside Stable Diffusion."""

import logging as _logging

# transformers warns at import that torchvision is missing (sdviz never needs it); keep our output clean.
_logging.getLogger("transformers.utils.import_utils").setLevel(_logging.ERROR)

__version__ = "0.1.0"

from sdviz import schedulers  # noqa: E402
from sdviz.capture import capture, generate  # noqa: E402
from sdviz.compare import compare  # noqa: E402
from sdviz.compare_modules import ModuleDiff, compare_modules  # noqa: E402
from sdviz.models.adapters import swap  # noqa: E402
from sdviz.pipeline import load_pipeline  # noqa: E402
from sdviz.tokenizer import load_tokenizer, token_info  # noqa: E402
from sdviz.trace import Step, TokenInfo, Trace  # noqa: E402

__all__ = ["ModuleDiff", "Step", "TokenInfo", "Trace", "__version__", "capture", "compare", "compare_modules", "generate", "load_pipeline", "load_tokenizer", "schedulers", "swap", "token_info"]
