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

from .api import (Clustering, EmbedSummary, Embeddings, FiledImage, Reduction, Run, RunPredictor, cluster,
                  cluster_points, embed, embed_folder, evaluate, fit_clusters, load_predictor, load_run, open_workspace, predict, reduce, report, scan)
from .config import PRESETS, ClusterConfig, EmbedConfig, ReduceConfig, RunConfig, ScanConfig
from .demo import write_digits, write_photo_crops
from .embed import MODELS, load_model
from .errors import (ConfigError, ImgclusterError, ModelUnavailable, NoImages, RunNotFound, UnknownName,
                     WorkspaceBusy)
from .scan import ScanResult

__version__ = "0.1.0"

__all__ = [
    "MODELS", "PRESETS", "ClusterConfig", "Clustering", "ConfigError", "EmbedConfig", "EmbedSummary", "Embeddings",
    "FiledImage", "ImgclusterError", "ModelUnavailable", "NoImages", "ReduceConfig", "Reduction", "Run", "RunConfig", "RunPredictor",
    "RunNotFound", "ScanConfig", "ScanResult", "UnknownName", "WorkspaceBusy", "cluster", "cluster_points",
    "embed", "embed_folder", "evaluate", "fit_clusters", "load_model", "load_predictor", "load_run", "open_workspace", "predict", "reduce", "report", "scan",
    "write_digits", "write_photo_crops",
]
