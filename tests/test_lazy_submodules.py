"""`import skmixed` alone gives access to its subpackages, each loaded on first use (PEP 562)."""

import pytest
from test_import_cost import HEAVY, loaded_after


def test_subpackages_are_attributes_after_a_plain_import():
    modules = loaded_after(
        "import skmixed\n"
        "assert {'datasets', 'plotting', 'magics', 'estimators', 'MixedLM'} <= set(dir(skmixed))\n"
        "assert skmixed.datasets.load('sleepstudy').shape == (180, 3)\n"
    )
    assert "skmixed.datasets" in modules
    assert not [m for m in HEAVY if m in modules]  # dir() and datasets load nothing heavy


@pytest.mark.parametrize(
    ("name", "loads"),
    [("plotting", "scipy.stats"), ("magics", "IPython"), ("estimators", "sklearn")],
)
def test_each_heavy_subpackage_loads_only_on_access(name, loads):
    before = loaded_after("import skmixed")
    after = loaded_after(f"import skmixed\nskmixed.{name}")
    assert loads not in before and f"skmixed.{name}" not in before
    assert loads in after and f"skmixed.{name}" in after


def test_unknown_attribute_is_an_attribute_error():
    import skmixed

    with pytest.raises(AttributeError, match="no attribute 'datasetz'"):
        skmixed.datasetz  # noqa: B018
    assert not hasattr(skmixed, "datasetz")
