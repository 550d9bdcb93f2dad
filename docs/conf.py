"""Sphinx configuration of the skmixed documentation (``make docs``; docs/about.md says why Sphinx).

Two parts of the source tree are written at build time, from the repository, and are not committed:

- ``api/``: one page per public name, generated from ``skmixed.__all__`` and the public submodules
  (:func:`write_api`), so a name added to ``__all__`` appears without editing the docs;
- ``tutorials/``: copies of ``notebooks/*.ipynb``, which myst-nb executes during the build.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO))  # a source checkout documents itself, installed or not

import skmixed  # noqa: E402

project = "skmixed"
author = "the skmixed developers"
copyright = "the skmixed developers"
release = version = skmixed.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "myst_nb",
]
exclude_patterns = ["_build", "README.md", "**.ipynb_checkpoints", "jupyter_execute"]
smartquotes = False  # a prime is a transpose here (Z'Z, X'WX), not a closing quote
highlight_language = "none"  # unlabelled blocks are R output or formulas, not Python
templates_path = []

# --- API reference ---------------------------------------------------------------------------
# The docstrings are prose in reST (``code``, :func: roles, unicode math) with numpydoc sections only in the
# scikit-learn estimators: napoleon's NumPy parser reads those sections and leaves the prose alone (see
# numpy_sections below for why it is not loaded as the sphinx.ext.napoleon extension).
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autosummary_generate = False  # the API pages are written by write_api_pages below

#: the public submodules, documented beside ``skmixed.__all__``
PUBLIC_SUBMODULES = [
    "skmixed.families",
    "skmixed.datasets",
    "skmixed.plotting",
    "skmixed.estimators",
    "skmixed.options",
    "skmixed.exceptions",
]

# --- notebooks -------------------------------------------------------------------------------
nb_execution_mode = "force"  # every build runs the notebooks against the code being documented
nb_execution_timeout = 600
nb_execution_raise_on_error = True  # a notebook that fails (a check that no longer holds) fails the build
nb_execution_show_tb = True
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# --- HTML ------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skmixed {release}"
html_static_path = ["_static"]
html_css_files = ["skmixed.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": {"**": ["page-toc"], "lme4": [], "benchmarks": []},  # their tables need the width
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
# the section navigation only where a section has several pages (tutorials, API reference)
html_sidebars = {page: [] for page in ["index", "install", "guide/*", "lme4", "how-it-works", "benchmarks", "about"]}
html_show_sourcelink = False


# --- generated sources ------------------------------------------------------------------------
def _public_names(module) -> list[str]:
    """A module's ``__all__``, or else the functions and classes it defines (not the ones it imports)."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and getattr(obj, "__module__", None) == module.__name__
    ]


def _kind(obj) -> str:
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj) and issubclass(obj, Warning):
        return "Warnings"
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return "Errors"
    if inspect.isclass(obj) and any(c.__module__.startswith("sklearn.") for c in obj.__mro__):
        return "scikit-learn estimators"
    if inspect.isclass(obj):
        return "Classes"
    return "Functions"


def _foreign_bases(cls) -> str:
    """The names of a class's bases from outside skmixed: their members are not repeated on its page."""
    return ", ".join(c.__name__ for c in cls.__mro__[1:] if not c.__module__.startswith("skmixed"))


def _directive(qualified: str, obj, every_member: bool = True) -> str:
    """The autodoc directive for ``obj``.  ``every_member``: also the members without a docstring and the ones
    inherited from skmixed's own bases (a result's accessors); otherwise the documented members it defines
    (a family's numerics are documented where they are defined, not on every subclass)."""
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return f".. autoexception:: {qualified}\n   :show-inheritance:\n"
    if inspect.isclass(obj):
        text = f".. autoclass:: {qualified}\n   :members:\n"
        if obj.__bases__ != (object,):
            text += "   :show-inheritance:\n"
        if every_member:
            text += f"   :undoc-members:\n   :inherited-members: {_foreign_bases(obj)}\n"
        return text
    return f".. autofunction:: {qualified}\n"


def _title(text: str, underline: str = "=") -> str:
    return f"{text}\n{underline * len(text)}\n"


def _summary(entries: list[tuple[str, object]], module: str | None = None) -> str:
    """An autosummary table (no stubs) of canonical names; ``module``'s own names relative to it."""
    lines = [".. autosummary::", "   :nosignatures:", ""]
    for qualified, _ in entries:
        if module and qualified.startswith(module + "."):
            qualified = qualified[len(module) + 1 :]
        lines.append(f"   {qualified}")
    return "\n".join(lines) + "\n"


def write_api_pages(app) -> None:
    """The API pages of this build, in ``docs/api``."""
    write_api(DOCS / "api")


def write_api(out: Path) -> None:
    """Write ``out``: an index, a page per name of ``skmixed.__all__`` and a page per public submodule.

    Each object is documented once, under its first public name (``skmixed.MixedLM``, not
    ``skmixed.estimators.MixedLM``); other pages link to it.
    """
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    canonical: dict[int, str] = {}
    groups: dict[str, list[tuple[str, object]]] = {}
    for name in skmixed.__all__:
        obj = getattr(skmixed, name)
        kind = _kind(obj)
        if kind == "module":
            continue
        qualified = f"skmixed.{name}"
        canonical[id(obj)] = qualified
        groups.setdefault(kind, []).append((qualified, obj))
        (out / f"{qualified}.rst").write_text(_title(qualified) + "\n" + _directive(qualified, obj))
    submodules = list(PUBLIC_SUBMODULES)
    submodules += [
        f"skmixed.{n}"
        for n in skmixed.__all__
        if inspect.ismodule(getattr(skmixed, n)) and f"skmixed.{n}" not in submodules
    ]
    for modname in submodules:
        module = importlib.import_module(modname)
        own, linked = [], []
        for name in _public_names(module):
            obj = getattr(module, name)
            if id(obj) in canonical:
                linked.append((canonical[id(obj)], obj))
            else:
                qualified = f"{modname}.{name}"
                canonical[id(obj)] = qualified
                own.append((qualified, obj))
        text = _title(modname) + f"\n.. automodule:: {modname}\n\n"
        if own or linked:
            text += _summary(own + linked, modname) + "\n"
        for qualified, obj in own:
            text += "\n" + _directive(qualified, obj, every_member=False)
        (out / f"{modname}.rst").write_text(text)
    order = ["Functions", "Classes", "scikit-learn estimators", "Errors", "Warnings"]
    index = [_title("API reference"), API_INTRO]
    toctree = []
    for kind in order + sorted(set(groups) - set(order)):
        if kind in groups:
            index += [_title(kind, "-"), _summary(groups[kind])]
            toctree += [q for q, _ in groups[kind]]
    index += [_title("Submodules", "-"), _summary([(m, None) for m in submodules])]
    toctree += submodules
    index += [".. toctree::\n   :hidden:\n\n" + "".join(f"   {q}\n" for q in toctree)]
    (out / "index.rst").write_text("\n".join(index))


API_INTRO = """
Everything below is generated from the package itself: the names in ``skmixed.__all__`` and the public
submodules, each documented by its docstring. ``import skmixed`` gives all top-level names;
``skmixed.datasets``, ``skmixed.plotting`` and the estimators are loaded on first use.
"""


def copy_notebooks(app) -> None:
    """Copy ``notebooks/*.ipynb`` into ``tutorials/`` (the site's tutorials; myst-nb runs them)."""
    out = DOCS / "tutorials"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        shutil.copy2(path, out / path.name)


def numpy_sections(app, what, name, obj, options, lines) -> None:
    """Render NumPy-style sections (Parameters, Attributes, Notes) with napoleon's parser, except in properties.

    sphinx.ext.napoleon would also read a property's first line as ``type: description`` (Google
    style for attributes), which turns skmixed's ``"Number of parameters: fixed effects, θ and σ."``
    into a type called "Number of parameters"; the estimators' sections are all it is needed for.
    """
    if what in ("attribute", "property", "data"):
        return
    from sphinx.ext.napoleon import Config, NumpyDocstring

    config = Config(napoleon_use_rtype=False, napoleon_use_ivar=False, napoleon_use_param=True)
    lines[:] = NumpyDocstring(lines, config, app, what, name, obj, options).lines()


def hide_result_constructors(app, what, name, obj, options, signature, return_annotation):
    """Results (dataclasses) are built by lmer/glmer, never by hand: their field lists are no signature to show."""
    if what == "class" and dataclasses.is_dataclass(obj):
        return "", None
    return None


def skip_foreign_members(app, what, name, obj, skip, options):
    """Leave out members that scikit-learn adds to the estimators (``set_fit_request``, ...): sklearn documents them."""
    if getattr(obj, "__module__", None) and obj.__module__.split(".")[0] == "sklearn":
        return True
    return None


def quiet_kernels(app) -> None:
    """Run the notebooks' kernels with a fresh IPython profile that logs errors only.

    ipykernel warns on every start that its local TCP sockets are unencrypted; that line is no
    warning about the docs.  A profile of its own also keeps the builder's IPython startup files
    out of the notebooks.
    """
    profile = Path(app.outdir).parent / "ipython" / "profile_default"
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "ipython_kernel_config.py").write_text('c.IPKernelApp.log_level = "ERROR"\n')
    os.environ["IPYTHONDIR"] = str(profile.parent)


def setup(app):
    app.connect("builder-inited", write_api_pages)
    app.connect("builder-inited", copy_notebooks)
    app.connect("builder-inited", quiet_kernels)
    app.connect("autodoc-skip-member", skip_foreign_members)
    app.connect("autodoc-process-docstring", numpy_sections)
    app.connect("autodoc-process-signature", hide_result_constructors)
