"""The API reference of the docs site is generated from the package's public names (docs/conf.py), so that a name
added to ``skmixed.__all__`` gets its page without editing the docs."""

import importlib.util
import inspect
from pathlib import Path

import pytest

import skmixed

CONF = Path(__file__).resolve().parent.parent / "docs" / "conf.py"


@pytest.fixture(scope="module")
def conf():
    spec = importlib.util.spec_from_file_location("skmixed_docs_conf", CONF)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # Sphinx itself is imported only by the build's event handlers
    return module


def test_every_public_name_has_a_page(conf, tmp_path):
    conf.write_api(tmp_path)
    index = (tmp_path / "index.rst").read_text()
    for name in skmixed.__all__:
        obj = getattr(skmixed, name)
        if inspect.ismodule(obj):
            assert (tmp_path / f"{obj.__name__}.rst").exists()
            continue
        page = (tmp_path / f"skmixed.{name}.rst").read_text()
        if inspect.isfunction(obj):
            directive = "autofunction"
        else:
            directive = "autoexception" if issubclass(obj, BaseException) else "autoclass"
        assert f".. {directive}:: skmixed.{name}\n" in page
        assert f"   skmixed.{name}\n" in index
    for module in conf.PUBLIC_SUBMODULES:
        assert f".. automodule:: {module}\n" in (tmp_path / f"{module}.rst").read_text()


def test_a_name_added_to_all_appears(conf, tmp_path, monkeypatch):
    def confint(result, level=0.95):
        """A public function added later."""

    assert not hasattr(skmixed, "confint")
    monkeypatch.setattr(skmixed, "confint", confint, raising=False)
    monkeypatch.setattr(skmixed, "__all__", [*skmixed.__all__, "confint"])
    conf.write_api(tmp_path)
    assert ".. autofunction:: skmixed.confint\n" in (tmp_path / "skmixed.confint.rst").read_text()
    assert "   skmixed.confint\n" in (tmp_path / "index.rst").read_text()


def test_each_object_is_documented_once(conf, tmp_path):
    """MixedLM is skmixed.MixedLM and skmixed.estimators.MixedLM: one page documents it, the other links to it."""
    conf.write_api(tmp_path)
    estimators = (tmp_path / "skmixed.estimators.rst").read_text()
    assert "   skmixed.MixedLM\n" in estimators and ".. autoclass:: skmixed.estimators.MixedLM" not in estimators
    plotting = (tmp_path / "skmixed.plotting.rst").read_text()
    assert ".. autofunction:: skmixed.plotting.caterpillar\n" in plotting
    assert "group_labels" not in plotting  # imported from an internal module, not plotting's own
