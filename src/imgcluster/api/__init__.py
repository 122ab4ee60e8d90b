"""The scriptable surface: one function per CLI command, and the pipeline's steps one by one.

    ws = open_workspace("photos/")                 # photos/.imgcluster
    found = scan("photos/", workspace=ws)          # catalogue + skips
    emb = embed(found.images, workspace=ws)        # cached, resumable
    red = reduce(emb.vectors)                      # clustering space + 2-D map
    clu = cluster_points(red.space)                # labels + membership probabilities

or all of it, with outputs written: ``run = cluster("photos/")``.

The modules, one verb each (open the workspace, call the stages and ``imgcluster.run``, return):
``steps`` (the steps above), ``job`` (``cluster``, ``report``, ``evaluate``), ``runs`` (load, list,
show, the cluster tree, compare, stability), ``naming`` (names and exports), ``living`` (``update``, proposal review),
``edit`` (merge, move), ``predict`` (filing new images), ``search`` (similar, text search,
duplicates), ``doctor``. A run is built and saved by ``imgcluster.run``'s one recipe.
"""

from .doctor import Checkup, doctor
from .edit import merge_clusters, move_images, split_cluster, split_off
from .job import cluster, evaluate, report
from .living import ProposedCluster, Update, review_proposals, update
from .naming import cluster_names, export, name_cluster, name_clusters
from .predict import FiledImage, RunPredictor, load_predictor, predict
from .runs import (DefaultRun, MovedImage, RunComparison, RunSummary, Stability, cluster_tree, compare_runs,
                   default_run, delete_run, discard_unsaved_run, list_runs, load_run, run_info, stability)
from .search import (DuplicateGroup, DuplicateImage, DuplicatePair, Duplicates, SearchResult, SimilarImage, duplicates, search_text,
                     similar, update_index)
from .steps import (Clustering, Embeddings, EmbedSummary, Progress, Reduction, Run, StageProgress, cluster_points,
                    embed, embed_folder, fit_clusters, open_workspace, reduce, scan)

__all__ = [
    "Checkup", "Clustering", "DefaultRun", "DuplicateGroup", "DuplicateImage", "DuplicatePair", "Duplicates",
    "EmbedSummary",
    "Embeddings", "FiledImage", "MovedImage", "Progress", "ProposedCluster", "Reduction", "Run", "RunComparison",
    "RunPredictor", "RunSummary", "SearchResult", "SimilarImage", "Stability", "StageProgress", "Update", "cluster",
    "cluster_names", "cluster_points", "cluster_tree", "compare_runs", "default_run", "delete_run", "discard_unsaved_run", "doctor",
    "duplicates", "embed", "embed_folder", "evaluate", "export", "fit_clusters", "list_runs", "load_predictor",
    "load_run", "merge_clusters", "move_images", "name_cluster", "name_clusters", "open_workspace", "predict",
    "reduce", "report", "review_proposals", "run_info", "scan", "search_text", "similar", "split_cluster", "split_off",
    "stability",
    "update",
    "update_index",
]
