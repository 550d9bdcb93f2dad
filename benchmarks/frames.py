"""A benchmark's data frame written once by ``python -m benchmarks --peers`` and read by each peer's process.

NumPy's ``.npz`` needs nothing beyond NumPy and pandas on either side (the peers' virtualenv has no pyarrow and no
skmixed), keeps every numeric column's values bit for bit, and keeps a categorical column as its codes and its levels
in order, so the peers see the same factors, with the same reference levels, as skmixed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def write_frame(frame: pd.DataFrame, path) -> None:
    arrays = {"columns": np.array([str(c) for c in frame.columns])}
    for i, name in enumerate(frame.columns):
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            arrays[f"codes{i}"] = column.cat.codes.to_numpy()
            arrays[f"levels{i}"] = np.array([str(level) for level in column.cat.categories])
            arrays[f"ordered{i}"] = np.array(column.cat.ordered)
        else:
            arrays[f"values{i}"] = column.to_numpy()
    np.savez(path, **arrays)


def read_frame(path) -> pd.DataFrame:
    with np.load(path, allow_pickle=False) as stored:
        columns = {}
        for i, name in enumerate(stored["columns"]):
            if f"codes{i}" in stored:
                levels = stored[f"levels{i}"].tolist()
                columns[str(name)] = pd.Categorical.from_codes(
                    stored[f"codes{i}"], levels, ordered=bool(stored[f"ordered{i}"])
                )
            else:
                columns[str(name)] = stored[f"values{i}"]
    return pd.DataFrame(columns)
