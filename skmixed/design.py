"""The names the fit pipeline imports from the model frame and the model matrices, in one place while it moves.

The code lives in modules by concern: :mod:`skmixed.frame` (the model frame),
:mod:`skmixed.model_matrix` (formulaic's model matrices with R's coding and names),
:mod:`skmixed.response` (the response's forms) and :mod:`skmixed.rank` (aliased columns).
Import from those; this module only re-exports what existing importers use.
"""
from .frame import ModelFrame, model_frame
from .frame import row_values as _column_or_array
from .model_matrix import Design, check_squares, design_matrix, encode_new, fixed_matrix
from .model_matrix import numeric_column as _numeric_vector

__all__ = [
    "ModelFrame", "model_frame", "Design", "design_matrix", "fixed_matrix", "encode_new", "check_squares",
    "_column_or_array", "_numeric_vector",
]
