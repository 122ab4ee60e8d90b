"""imgcluster: turn a pile of unlabelled images into meaningful groups.

Scripting the pipeline step by step::

    import imgcluster as ic
    ws = ic.open_workspace("photos/")
    found = ic.scan("photos/", workspace=ws)
    emb = ic.embed(found, workspace=ws)            # EmbedConfig(model="auto") by default
    red = ic.reduce(emb.vectors)
    clu = ic.cluster_points(red.space)

or in one call, writing clusters.csv/.parquet and report.html: ``run = ic.cluster("photos/")``.
"""

import os as _os


def _busy_cores() -> bool:
    try:
        return _os.getloadavg()[0] > 0.5 * (_os.cpu_count() or 1)
    except OSError:  # no load average on this platform
        return False


# Decided before anything loads torch (OpenMP reads it once). OpenMP's threads spin while they
# wait: on cores other processes keep busy that made embedding 3-9x slower (measured on 2 cores:
# 9.7 images/s spinning vs 29 passive with two busy processes beside it), while on free cores
# passive waiting costs about 20% (38 vs 30). So: passive when the cores are already busy. A
# value the user set wins.
if _busy_cores():
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .api import (Checkup, Clustering, DefaultRun, DuplicateGroup, DuplicateImage, DuplicatePair, Duplicates, EmbedSummary, Embeddings,
                  FiledImage, MovedImage, Reduction, RunComparison, RunPredictor, RunSummary, SearchResult,
                  SimilarImage, Stability, Update, cluster, cluster_names, cluster_points, cluster_tree, compare_runs,
                  default_run, delete_run, discard_unsaved_run, doctor, duplicates, embed, embed_folder, evaluate,
                  export, fit_clusters, list_runs, load_predictor, load_run, merge_clusters, move_images, name_cluster,
                  name_clusters, open_workspace, predict, reduce, report, review_proposals, run_info, scan, search_text,
                  similar, split_cluster, split_off, stability, update, update_index)
from .config import (PRESETS, ClusterConfig, DedupConfig, EmbedConfig, NameConfig, RayConfig, ReduceConfig, RunConfig,
                     ScanConfig)
from .demo import write_digits, write_photo_crops
from .embed import MODELS, load_model
from .errors import (ConfigError, ImgclusterError, ModelUnavailable, NoImages, NotFitted, RunNotFound, UnknownName,
                     WorkerDied,
                     WorkspaceBusy, WorkspaceDamaged, WorkspaceNotFound, WorkspaceTooNew)
from .export import ExportResult
from .label import NAMERS
from .run import (ClusterSummary, ClusterTree, Embedded, Naming, ProposedCluster, Provenance, Representatives, Run,
                  RunRecord, TreeNode)
from .scan import ScanResult
from .store import Assignments, ClusterName, ImageRecord
from .store.shards import ShardedVectors
from .store.vector_export import ExportedVectors, read_exported_shards

__version__ = "0.1.0"

# Sorted (upper case first, as sorted() orders them); tests/test_public_api.py checks that it is, that
# every name imports and that every class and function in it is documented.
__all__ = [
    "Assignments",
    "Checkup",
    "ClusterConfig",
    "ClusterName",
    "ClusterSummary",
    "ClusterTree",
    "Clustering",
    "ConfigError",
    "DedupConfig",
    "DefaultRun",
    "DuplicateGroup",
    "DuplicateImage",
    "DuplicatePair",
    "Duplicates",
    "EmbedConfig",
    "EmbedSummary",
    "Embedded",
    "Embeddings",
    "ExportResult",
    "ExportedVectors",
    "FiledImage",
    "ImageRecord",
    "ImgclusterError",
    "MODELS",
    "ModelUnavailable",
    "MovedImage",
    "NAMERS",
    "NameConfig",
    "Naming",
    "NoImages",
    "NotFitted",
    "PRESETS",
    "ProposedCluster",
    "Provenance",
    "RayConfig",
    "ReduceConfig",
    "Reduction",
    "Representatives",
    "Run",
    "RunComparison",
    "RunConfig",
    "RunNotFound",
    "RunPredictor",
    "RunRecord",
    "RunSummary",
    "ScanConfig",
    "ScanResult",
    "SearchResult",
    "ShardedVectors",
    "SimilarImage",
    "Stability",
    "TreeNode",
    "UnknownName",
    "Update",
    "WorkerDied",
    "WorkspaceBusy",
    "WorkspaceDamaged",
    "WorkspaceNotFound",
    "WorkspaceTooNew",
    "cluster",
    "cluster_names",
    "cluster_points",
    "cluster_tree",
    "compare_runs",
    "default_run",
    "delete_run",
    "discard_unsaved_run",
    "doctor",
    "duplicates",
    "embed",
    "embed_folder",
    "evaluate",
    "export",
    "fit_clusters",
    "list_runs",
    "load_model",
    "load_predictor",
    "load_run",
    "merge_clusters",
    "move_images",
    "name_cluster",
    "name_clusters",
    "open_workspace",
    "predict",
    "read_exported_shards",
    "reduce",
    "report",
    "review_proposals",
    "run_info",
    "scan",
    "search_text",
    "similar",
    "split_cluster",
    "split_off",
    "stability",
    "update",
    "update_index",
    "write_digits",
    "write_photo_crops",
]
