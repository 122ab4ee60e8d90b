"""The scriptable surface: one function per CLI command, and the pipeline's steps one by one.

    ws = open_workspace("photos/")                 # photos/.imgcluster
    found = scan("photos/", workspace=ws)          # catalogue + skips
    emb = embed(found.images, workspace=ws)        # cached, resumable
    red = reduce(emb.vectors)                      # clustering space + 2-D map
    clu = cluster_points(red.space)                # labels + membership probabilities

or all of it, with outputs written: ``run = cluster("photos/")``.

The modules: ``steps`` (the steps above), ``job`` (``cluster``, reading runs back, ``evaluate``),
``naming`` (names and exports), ``runs`` (list, show, compare, stability), ``predict`` (filing new
images). This package only wires stages together; the work is in the stage modules.
"""

from .job import cluster, evaluate, load_run, report
from .naming import cluster_names, export, name_cluster, name_clusters
from .predict import FiledImage, RunPredictor, load_predictor, predict
from .runs import (
                   MovedImage,
                   RunComparison,
                   RunSummary,
                   Stability,
                   compare_runs,
                   delete_run,
                   discard_unsaved_run,
                   list_runs,
                   run_info,
                   stability,
)
from .living import ProposedCluster, Update, review_proposals, update
from .steps import (
                   Clustering,
                   Embeddings,
                   EmbedSummary,
                   Progress,
                   Reduction,
                   Run,
                   StageProgress,
                   cluster_points,
                   embed,
                   embed_folder,
                   fit_clusters,
                   open_workspace,
                   reduce,
                   scan,
)

__all__ = [
    "Clustering", "EmbedSummary", "Embeddings", "FiledImage", "MovedImage", "Progress", "Reduction", "Run",
    "RunComparison", "RunPredictor", "RunSummary", "Stability", "StageProgress", "cluster", "cluster_names",
    "cluster_points", "compare_runs", "delete_run", "discard_unsaved_run", "embed", "embed_folder", "evaluate", "export", "fit_clusters",
    "list_runs", "load_predictor", "load_run", "name_cluster", "name_clusters", "open_workspace", "predict",
    "reduce", "report", "run_info", "scan", "stability", "ProposedCluster", "Update", "review_proposals", "update",
]

from .search import (  # noqa: E402
                     DuplicateGroup,
                     DuplicateImage,
                     DuplicatePair,
                     Duplicates,
                     SearchResult,
                     SimilarImage,
                     duplicates,
                     search_text,
                     similar,
                     update_index,
)

__all__ += ["DuplicateGroup", "DuplicateImage", "DuplicatePair", "Duplicates", "SearchResult", "SimilarImage",
            "duplicates", "search_text", "similar", "update_index"]

from .edit import merge_clusters, move_images  # noqa: E402

__all__ += ["merge_clusters", "move_images"]
from .runs import DefaultRun, default_run  # noqa: E402

__all__ += ["DefaultRun", "default_run"]
from .doctor import Checkup, doctor  # noqa: E402

__all__ += ["Checkup", "doctor"]
