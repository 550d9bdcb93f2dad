"""``make demo``: fit the classic multilevel examples shipped with skmixed and print lme4-style summaries."""
from __future__ import annotations

import time
import warnings

from . import datasets, lmer

EXAMPLES = [
    ("Exam", "normexam ~ standLRT + (1 | school)", "students in schools (seed 000, Table 1)"),
    ("Exam", "normexam ~ standLRT + sex + schgend + (standLRT | school)", "random slope of intake score"),
    ("ScotsSec", "attain ~ verbal + sex + (1 | primary) + (1 | second)", "crossed primary x secondary schools (seed 004)"),
    ("Chem97", "score ~ gcsecnt + (1 | school) + (1 | lea)", "schools within LEAs (seed 004)"),
    ("Hsb82", "mAch ~ meanses * cses + sector * cses + (cses | school)", "High School & Beyond (seed 002)"),
    ("Orthodont", "distance ~ age * Sex + (age | Subject)", "growth curves (seed 000)"),
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", "lme4's sleepstudy"),
]


def main() -> None:
    for name, formula, what in EXAMPLES:
        data = datasets.load(name)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = lmer(formula, data)
        seconds = time.perf_counter() - start
        print("=" * 78)
        print(f"{name}: {what}  [{len(data):,} rows, fitted in {seconds:.3f} s]")
        print("=" * 78)
        print(m.summary())
        print()


if __name__ == "__main__":
    main()
