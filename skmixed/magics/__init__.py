"""IPython extension: ``%load_ext skmixed.magics`` registers the ``%%lmer``, ``%%glmer`` and ``%%hlm`` cell magics."""

from .cell import MixedModelMagics, formula_from_cell
from .hlm import HlmMagics

__all__ = ["MixedModelMagics", "HlmMagics", "formula_from_cell", "load_ipython_extension"]


def load_ipython_extension(ipython) -> None:
    """Register the magics with a running IPython (plain terminal or Jupyter kernel)."""
    ipython.register_magics(MixedModelMagics)
    ipython.register_magics(HlmMagics)
