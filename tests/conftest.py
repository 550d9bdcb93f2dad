import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import settings

# property-based tests: a few examples in `make test`, many in `make fuzz` (--hypothesis-profile=fuzz)
settings.register_profile("default", max_examples=8, deadline=None, derandomize=True)
settings.register_profile("fuzz", max_examples=400, deadline=None)
settings.load_profile("default")

sys.path.insert(0, str(Path(__file__).parent))

from reference import load_data, references  # noqa: E402

import skmixed  # noqa: E402

_FITS: dict = {}


def fit_reference(key: str):
    """Fit a reference model once per session (warnings recorded, not raised)."""
    if key not in _FITS:
        ref = references(None)[key]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = skmixed.lmer(
                ref["formula"], load_data(ref), REML=ref["REML"], weights=ref.get("weights"), offset=ref.get("offset")
            )
        _FITS[key] = (m, list(caught))
    return _FITS[key]


@pytest.fixture
def sleepstudy():
    return load_data(references()["sleepstudy_slope_reml"])
