"""``python -m skmixed.demo``: fit classic multilevel examples and print their lme4-style summaries.

Everything it needs ships in the package (the data come from :mod:`skmixed.datasets`), so it
runs from an installed wheel.  ``make demo`` in a clone of the repository runs it and then
executes the tour notebook into ``build/tour.html``.
"""

from __future__ import annotations

import argparse
import time
import warnings

from . import datasets, lmer

#: (data set, formula, what the model shows and where it comes from)
EXAMPLES = [
    (
        "Exam",
        "normexam ~ standLRT + sex + schgend + (1 | school)",
        "London pupils in schools, random intercepts (de Leeuw, 'Linear Multilevel Models')",
    ),
    (
        "Exam",
        "normexam ~ standLRT + sex + schgend + (standLRT | school)",
        "the intake score's slope varies by school (de Leeuw, 'Linear Multilevel Models')",
    ),
    (
        "ScotsSec",
        "attain ~ verbal * sex + (1 | primary) + (1 | second)",
        "primary crossed with secondary schools (Bates, useR! 2004)",
    ),
    (
        "Chem97",
        "score ~ gcsecnt + (1 | school) + (1 | lea)",
        "schools within local education authorities (Bates, useR! 2004)",
    ),
    (
        "Hsb82",
        "mAch ~ meanses * cses + sector * cses + (cses | school)",
        "High School and Beyond (Barron's lecture notes)",
    ),
    (
        "Orthodont",
        "distance ~ age * Sex + (age | Subject)",
        "growth curves of children (de Leeuw, 'Linear Multilevel Models')",
    ),
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", "lme4's sleep deprivation study"),
]


def print_summaries(examples=EXAMPLES) -> None:
    """Fit each example (REML, as lme4's default) and print its summary with the rows and the time taken."""
    for name, formula, what in examples:
        data = datasets.load(name)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a boundary fit's message belongs in the summary, not above it
            m = lmer(formula, data)
        seconds = time.perf_counter() - start
        print("=" * 78)
        print(f"{name}: {what}  [{len(data):,} rows, fitted in {seconds:.3f} s]")
        print("=" * 78)
        print(m.summary())
        print()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m skmixed.demo", description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="*", help="only the examples on these data sets (default: all)")
    args = parser.parse_args(argv)
    wanted = {d.lower() for d in args.data}
    known = {name.lower() for name, _, _ in EXAMPLES}
    if wanted - known:
        parser.error(
            f"no example on {', '.join(sorted(wanted - known))}; the examples use "
            f"{', '.join(dict.fromkeys(name for name, _, _ in EXAMPLES))}"
        )
    print_summaries([e for e in EXAMPLES if not wanted or e[0].lower() in wanted])


if __name__ == "__main__":
    main()
