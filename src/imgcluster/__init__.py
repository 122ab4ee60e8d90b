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

from .api import (Clustering, EmbedSummary, Embeddings, FiledImage, MovedImage, Reduction, Run, RunComparison,
                  RunPredictor, RunSummary, Stability, cluster, cluster_names, cluster_points, compare_runs, delete_run,
                  discard_unsaved_run, embed, embed_folder, evaluate, export, fit_clusters, list_runs, load_predictor, load_run,
                  name_cluster, name_clusters, open_workspace, predict, reduce, report, run_info, scan, stability)
from .api import ProposedCluster, Update, review_proposals, update
from .config import PRESETS, ClusterConfig, EmbedConfig, NameConfig, ReduceConfig, RunConfig, ScanConfig
from .demo import write_digits, write_photo_crops
from .embed import MODELS, load_model
from .errors import (ConfigError, ImgclusterError, ModelUnavailable, NoImages, RunNotFound, UnknownName,
                     WorkspaceBusy)
from .export import ExportResult
from .label import NAMERS
from .represent import Representatives
from .scan import ScanResult
from .store import ClusterName
from .store.shards import ShardedVectors

__version__ = "0.1.0"

__all__ = [
    "MODELS", "NAMERS", "PRESETS", "ClusterConfig", "ClusterName", "Clustering", "ConfigError", "EmbedConfig",
    "EmbedSummary", "Embeddings", "ExportResult", "FiledImage", "ImgclusterError", "ModelUnavailable", "MovedImage",
    "NameConfig", "NoImages", "ReduceConfig", "Reduction", "Representatives", "Run", "RunComparison", "RunConfig",
    "RunPredictor", "RunNotFound", "RunSummary", "ScanConfig", "ScanResult", "ShardedVectors", "Stability",
    "UnknownName", "WorkspaceBusy", "cluster", "cluster_names", "cluster_points", "compare_runs", "delete_run",
    "discard_unsaved_run", "embed", "embed_folder", "evaluate", "export", "fit_clusters", "list_runs", "load_model", "load_predictor", "load_run",
    "name_cluster", "name_clusters", "open_workspace", "predict", "reduce", "report", "run_info", "scan", "stability",
    "write_digits", "write_photo_crops",
]
__all__ += ["ProposedCluster", "Update", "review_proposals", "update"]
from .api import (DuplicateGroup, DuplicateImage, DuplicatePair, Duplicates, SearchResult,  # noqa: E402
                  SimilarImage, duplicates, search_text, similar, update_index)
from .config import DedupConfig  # noqa: E402

__all__ += ["DedupConfig", "DuplicateGroup", "DuplicateImage", "DuplicatePair", "Duplicates", "SearchResult",
            "SimilarImage", "duplicates", "search_text", "similar", "update_index"]
from .api import merge_clusters, move_images  # noqa: E402

__all__ += ["merge_clusters", "move_images"]
from .config import RayConfig  # noqa: E402

__all__ += ["RayConfig"]
from .errors import WorkerDied  # noqa: E402
from .store.vector_export import ExportedVectors, read_exported_shards  # noqa: E402

__all__ += ["ExportedVectors", "WorkerDied", "read_exported_shards"]
from .api import DefaultRun, default_run  # noqa: E402

__all__ += ["DefaultRun", "default_run"]
from .api import Checkup, doctor  # noqa: E402
from .errors import WorkspaceDamaged, WorkspaceNotFound, WorkspaceTooNew  # noqa: E402

__all__ += ["Checkup", "WorkspaceDamaged", "WorkspaceNotFound", "WorkspaceTooNew", "doctor"]
