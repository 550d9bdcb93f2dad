"""The names the fit pipeline and its tests import from the model frame and model matrices, while they move.

The code lives in modules by concern: :mod:`skmixed.frame` (the model frame),
:mod:`skmixed.model_matrix` (formulaic's model matrices with R's coding and names),
:mod:`skmixed.response` (the response's forms) and :mod:`skmixed.rank` (aliased columns).
Import from those; this module only re-exports what existing importers use.
"""

from .frame import ModelFrame, model_frame
from .frame import row_values as _column_or_array
from .model_matrix import Design, check_squares, design_matrix, encode_new, fixed_matrix, model_matrix, r_names
from .model_matrix import numeric_column as _numeric_vector

__all__ = [
    "Design",
    "ModelFrame",
    "_column_or_array",
    "_numeric_vector",
    "check_squares",
    "design_matrix",
    "encode_new",
    "fixed_matrix",
    "model_frame",
    "model_matrix",
    "r_names",
]
