"""Stand-ins for the rows of a model record fitted on Dask data: they stay on the workers.

The in-memory record holds y, X, Z, the weights and the rows used; a Dask fit's record holds none of
them.  Its fields hold a :class:`RowsOnWorkers` instead, which raises :class:`~skmixed.exceptions.OptionError`
naming the quantity on any use, so that an analysis not written for Dask data stops with a clear message
instead of computing on an empty array.
"""

from __future__ import annotations

from ..exceptions import OptionError


class RowsOnWorkers:
    """A per-row quantity (``what``) of a fit on a Dask DataFrame, which the client does not hold."""

    def __init__(self, what: str):
        self.what = what

    def error(self) -> OptionError:
        return OptionError(
            f"the {self.what} of a fit on a Dask DataFrame stays on the workers, and this analysis needs it in "
            "memory: use the result's lazy fitted/residuals/predict, or fit an in-memory sample "
            "(ddf.sample(frac=...).compute()) for this analysis"
        )

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise self.error()

    def __reduce__(self):
        return RowsOnWorkers, (self.what,)

    def __repr__(self) -> str:
        return f"<{self.what} on the Dask workers>"

    def _refuse(self, *args, **kwargs):
        raise self.error()

    __array__ = __len__ = __iter__ = __getitem__ = __bool__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _refuse
    __matmul__ = __rmatmul__ = __neg__ = __pow__ = __lt__ = __gt__ = __le__ = __ge__ = _refuse
