"""Names from an ImageNet classifier head: what a CNN trained on ImageNet thinks the cluster shows."""

from __future__ import annotations

import base64
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..config import NameConfig
from ..errors import ConfigError
from ..store import ClusterName, Workspace
from .appearance import looks, two_tone
from .base import ClusterView, NamingContext
from .hierarchy import Hierarchy, hedged_cluster_names, imagenet_hierarchy, name_cluster

log = logging.getLogger(__name__)

_BATCH = 16


class ImageNetNamer:
    """Classifies ``images_per_cluster`` members of each cluster (its sample by content hash, so that
    the same members give the same name whatever the seed; its representatives where a view has no
    sample) with an ImageNet head (the bundled efficientnet-lite0's, whatever model the run used),
    sums the class probabilities up ImageNet's is-a tree and names the cluster by the most specific
    node the images are sure enough of on average, narrowed to where most members' best classes
    agree and hedged up to where names of its kind were measured right (see ``hierarchy``): a class
    when sure, a broader node when not, "mixed: …" when the members are sure of different things,
    "unrecognised" when they are sure of nothing. Clusters that would share a name are told apart by
    what differs between them (a class, else how their pictures look). A name that reads unsure ends
    in "?". Confidence is the named node's score (its mean probability beyond
    chance) calibrated for its kind of node, so that its word (sure, likely, unsure) is the measured one."""

    source = "imagenet"
    needs_embeddings = False

    def __init__(self, classifier: Any, hierarchy: Hierarchy, images_per_cluster: int = 16,
                 workspace: Workspace | None = None):
        self.classifier, self.hierarchy, self.images_per_cluster = classifier, hierarchy, images_per_cluster
        self.workspace = workspace  # caches each image's class probabilities, keyed by its content

    @classmethod
    def from_config(cls, config: NameConfig, context: NamingContext) -> "ImageNetNamer":
        classifier = context.load_classifier()
        if not callable(getattr(classifier, "classify", None)):
            raise ConfigError(f"{getattr(classifier, 'name', 'This model')} has no ImageNet classifier head. "
                              "Use --namer zero-shot (CLIP-like models) or --namer vlm.")
        return cls(classifier, imagenet_hierarchy(), config.images_per_cluster, context.workspace)

    def name(self, clusters: Sequence[ClusterView], progress: Callable[[int, int], None] | None = None,
             keep: Mapping[int, str] | None = None) -> list[ClusterName]:
        """Names for ``clusters``; ``keep`` maps clusters to texts they keep (a followed run's names,
        see ``run.derive``): those get no new name, and the others' names are told apart from theirs."""
        keep = keep or {}
        hedged, scores, named, failed, views = [], [], [], [], []
        for done, view in enumerate(clusters):
            if progress is not None:
                progress(done, len(clusters))
            members = self.read_members(view)
            if members is None:
                if view.cluster not in keep:
                    failed.append(ClusterName(view.cluster, "", self.source,
                                              error="none of its representative images could be read"))
                continue
            probabilities, evidence = members
            hedged.append(name_cluster(probabilities, self.hierarchy, evidence=evidence))
            # Every member's classes, two-tone ones too: these tell clusters apart and give the
            # guesses of unsure names ("unrecognised (Flat-Coated Retriever?)"), which claim nothing.
            scores.append(self.hierarchy.scores(probabilities.mean(axis=0, keepdims=True))[0])
            named.append(view.cluster)
            views.append(view)
        if progress is not None:
            progress(len(clusters), len(clusters))
        if not named:
            return failed
        names = hedged_cluster_names(named, hedged, scores, self.hierarchy, self.source, keep,
                                     functools.cache(lambda i: looks(views[i])))
        return sorted(names + failed, key=lambda n: n.cluster)

    def class_probabilities(self, view: ClusterView) -> np.ndarray | None:
        """(m, 1000) ImageNet probabilities of the first readable images of the cluster's sample (its
        representatives where it has none), or None (see ``read_members``)."""
        members = self.read_members(view)
        return None if members is None else members[0]

    def read_members(self, view: ClusterView) -> tuple[np.ndarray, np.ndarray] | None:
        """((m, 1000) ImageNet probabilities, (m,) evidence) of the first readable images of the
        cluster's sample (its representatives where it has none), or None. A member is no evidence
        when its picture is in two tones far apart (``appearance.two_tone``: a silhouette, a
        drawing in ink): an ImageNet-trained CNN goes by texture (Geirhos et al., ICLR 2019) and
        reads such pictures wrong as surely as it reads photos right (the horse silhouette:
        "Flat-Coated Retriever", likely, bench/names.py).

        Each image's probabilities and two-tone flag are cached in the workspace under its content
        hash and the classifier's ``model_id``, so naming the same images again (a re-cluster,
        ``--follow``) needs neither the pictures nor the network: on the 1,797 digits that is most
        of naming's time and, in a fresh process, torch's import besides."""
        if view.sample is not None and view.sample.paths:
            view = view.sample
        count = min(self.images_per_cluster, len(view.paths))
        found: dict[int, np.ndarray] = {}
        for i in range(count):
            cached = self._cached(view.content_hashes[i] if i < len(view.content_hashes) else None)
            if cached is not None:
                found[i] = cached
        pixels, order, flags = [], [], []
        for i in range(count):
            if i in found:
                continue
            try:
                picture = view.image(i, min_side=self.classifier.input_size)
                pixels.append(self.classifier.preprocess(picture))
                flags.append(two_tone(picture))
                order.append(i)
            except Exception as error:  # one unreadable image must not cost the cluster its name
                log.debug("cannot read %s for naming: %s", view.paths[i], error)
        if pixels:
            fresh = np.concatenate([self.classifier.classify(np.stack(pixels[start:start + _BATCH]))
                                    for start in range(0, len(pixels), _BATCH)])
            # Through float16, as cached: the first naming and every later one see the same values,
            # so a name near a confidence bar cannot change when it comes from the cache.
            fresh = fresh.astype(np.float16).astype(np.float32)
            for i, probabilities, flag in zip(order, fresh, flags):
                found[i] = np.append(probabilities, np.float32(flag))
            self._remember({view.content_hashes[i]: found[i] for i in order if i < len(view.content_hashes)})
        if not found:
            return None
        rows = np.stack([found[i] for i in sorted(found)]).astype(np.float32)
        return rows[:, :-1], rows[:, -1] == 0

    def _cache_key(self, content_hash: str | None) -> str | None:
        if self.workspace is None or not content_hash:
            return None
        return f"{self.source}:{self.classifier.model_id}:{content_hash}"

    def _cached(self, content_hash: str | None) -> np.ndarray | None:
        key = self._cache_key(content_hash)
        answer = self.workspace.namer_answer(key) if key is not None and self.workspace is not None else None
        if answer is None:
            return None
        try:
            probabilities = np.frombuffer(base64.b64decode(answer), dtype=np.float16)
        except ValueError:  # not ours or damaged: classify the picture again
            return None
        # The class probabilities and the two-tone flag last; an answer cached before the flag was
        # (probabilities only) is read again from the picture.
        return probabilities.astype(np.float32) if probabilities.size == self.hierarchy.n_classes + 1 else None

    def _remember(self, probabilities: dict[str, np.ndarray]) -> None:
        """Cache fresh probabilities (the two-tone flag last) by content hash, one transaction per cluster."""
        if self.workspace is None:
            return
        # float16: 2 KB per image, probabilities kept to ~1e-3 of their value.
        answers = {key: base64.b64encode(np.asarray(p, dtype=np.float16).tobytes()).decode("ascii")
                   for content_hash, p in probabilities.items() if (key := self._cache_key(content_hash)) is not None}
        if answers:
            self.workspace.save_namer_answers(answers, self.source)
