"""The lme4 reference set is complete: a fixture lost or renamed fails here instead of silently dropping tests."""

import pytest
from reference import SETS, as_list, data_file, load_data, references


def test_number_of_reference_fits_is_pinned():
    everything = references(None)
    assert sum("/" not in k for k in everything) == 11  # public set (lme4 1.1-31, public/specs_public.R)
    assert sum(k.startswith("extra/") for k in everything) == 36  # ours (extra/specs_extra.R)
    assert len(references("gaussian")) == 32
    assert len(references("glmm")) == 15
    assert set(references("gaussian")) | set(references("glmm")) == set(everything)


def test_every_set_file_exists():
    for path in SETS.values():
        assert path.is_file(), path


@pytest.mark.parametrize("name", sorted({ref["data"] for ref in references(None).values()}))
def test_every_data_set_loads_with_the_model_columns(name):
    """Each data set of a fit is shipped, and its factor levels sidecar matches its columns."""
    df = load_data(name)
    assert data_file(name).stat().st_size > 0
    nobs = max(ref["nobs"] for ref in references(None).values() if ref["data"] == name)
    assert len(df) >= nobs
    for ref in references(None).values():
        if ref["data"] == name:
            for col in ("weights", "offset"):
                if ref.get(col):
                    assert as_list(ref[col])[0] in df.columns
