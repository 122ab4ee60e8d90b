"""Frozen, validated settings for each pipeline stage, and the named presets.

Every field's ``metadata["help"]`` is the text the CLI shows. A run stores its *resolved* config
(after automatic choices such as ``min_cluster_size``) as JSON so it can be replayed.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, UnknownName


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class ScanConfig:
    """Which files count as images and which are skipped."""

    min_side: int = _help(
        "Images with a side shorter than this many pixels are skipped (tracking pixels, icons). 1-64.", 8)
    max_pixels: int = _help(
        "Images larger than this many pixels are skipped as possible decompression bombs "
        "(Pillow refuses more than 178,956,970 in any case).", 178_956_970)
    follow_symlinks: bool = _help(
        "Follow symbolic links that lead outside the scanned folder (to files and folders). Links inside it are "
        "always read; links outside are skipped with the reason unless this is set.", False)
    # Videos (mp4, mov, mkv, webm, avi; needs PyAV) become key-frames: see video.py.
    video_detect_fps: float = _help(
        "Frames per second of a video compared for shot boundaries (every frame up to this rate); a hard cut is "
        "placed within one compared frame. 5-60.", 30.0)
    video_cut_threshold: float = _help(
        "The least change between compared frames that can be a cut: the geometric mean of the colour-histogram "
        "change and the picture change (each 0-1). A cut must also be twice the changes beside it and stand above "
        "those of the second before it. 0.01-0.1; lower finds more cuts (and more false ones).", 0.025)
    video_min_shot_seconds: float = _help(
        "A cut this soon after the previous one is ignored (flashes, flicker). 0.1-2 seconds.", 0.5)
    video_frames_per_shot: int = _help(
        "Key-frames per shot, at most: the shot is cut into this many parts (of at least a second) and each "
        "gives its sharpest frame near its middle, unless it looks like the frame kept before it (a static shot "
        "gives one, a pan up to this many). 1-3.", 3)
    video_frames_per_minute: float = _help(
        "Shots longer than frames_per_shot parts of this rate are cut into parts of 60/this seconds instead, so a "
        "long take gives at most this many key-frames per minute (a static one still gives one). 1-60.", 6.0)
    video_frame_side: int = _help(
        "Key-frames are kept in the workspace as JPEG with their longer side at most this many pixels. 224-1920.",
        640)

    def __post_init__(self) -> None:
        if self.min_side < 1:
            raise ConfigError(f"min_side must be at least 1 pixel; got {self.min_side}.")
        if self.max_pixels < 1:
            raise ConfigError(f"max_pixels must be positive; got {self.max_pixels}.")
        if self.video_detect_fps <= 0:
            raise ConfigError(f"video_detect_fps must be positive; got {self.video_detect_fps}.")
        if not 0.0 < self.video_cut_threshold < 1.0:
            raise ConfigError(f"video_cut_threshold is a histogram distance between 0 and 1; got "
                              f"{self.video_cut_threshold}.")
        if self.video_min_shot_seconds < 0:
            raise ConfigError(f"video_min_shot_seconds must be at least 0; got {self.video_min_shot_seconds}.")
        if not 1 <= self.video_frames_per_shot <= 3:
            raise ConfigError(f"video_frames_per_shot must be 1-3; got {self.video_frames_per_shot}.")
        if self.video_frames_per_minute <= 0:
            raise ConfigError(f"video_frames_per_minute must be positive; got {self.video_frames_per_minute}.")
        if self.video_frame_side < 32:
            raise ConfigError(f"video_frame_side must be at least 32 pixels; got {self.video_frame_side}.")

    def video_params(self) -> str:
        """The video settings as one string: a video extracted with other settings is extracted again."""
        return ",".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                        if f.name.startswith("video_"))


# How a transformer's outputs become one vector per image; the code is embed/pooling.py.
POOLINGS: dict[str, str] = {
    "image-features": "the model's own image embedding (get_image_features): CLIP's projected class token, "
                      "SigLIP's attention-pooled head; the only choice comparable with the text tower",
    "pooler": "the vision backbone's pooler_output (DINOv2 and CLIP: the layer-normed class token, "
              "ViT: dense+tanh on it, SigLIP: the attention-pooled head)",
    "cls": "the class token of the last layer",
    "mean": "the average of the patch tokens (class and register tokens left out)",
    "sum": "the sum of all tokens, class token included (the GumGum article's ViT-MAE recipe)",
}


def check_pooling(pooling: str | None) -> None:
    """Raise ConfigError naming the choices when ``pooling`` is neither None nor one of POOLINGS."""
    if pooling is not None and pooling not in POOLINGS:
        raise ConfigError(f"No pooling called {pooling!r}. Choose one of: {', '.join(POOLINGS)}, "
                          "or leave it unset for the model's default.")


# Who runs the model; the code is embed/backends.py.
BACKEND_NAMES = ("auto", "torch", "onnxruntime", "openvino")
PRECISIONS = ("auto", "float32", "int8")


def check_backend(backend: str, precision: str = "auto") -> None:
    """Raise ConfigError naming the choices when ``backend`` or ``precision`` is not one, or when
    they do not go together (PyTorch runs float32 here)."""
    if backend not in BACKEND_NAMES:
        raise ConfigError(f"No backend called {backend!r}. Choose one of: {', '.join(BACKEND_NAMES)}.")
    if precision not in PRECISIONS:
        raise ConfigError(f"No precision called {precision!r}. Choose one of: {', '.join(PRECISIONS)}.")
    if backend == "torch" and precision == "int8":
        raise ConfigError("The torch backend runs float32; for int8 choose --backend onnxruntime, openvino or auto.")


DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
MAX_DECODE_WORKERS = 16  # the documented range of EmbedConfig.workers
MAX_SEED = 2**32 - 1  # NumPy's and umap-learn's random states refuse larger seeds (and negative ones)


def check_device_name(device: str) -> None:
    """Raise ConfigError naming the choices when ``device`` is not one imgcluster can ask torch for.
    Whether this machine has that device is checked when work starts (``embed.check_device``)."""
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        raise ConfigError(f"No device called {device!r}. Choose one of: {', '.join(DEVICES)} (N: the GPU's "
                          "number, from 0).")


def check_seed(seed: int, name: str = "seed") -> None:
    """Raise ConfigError unless ``seed`` is a whole number NumPy accepts as a seed."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{name} must be a whole number from 0 to {MAX_SEED:,}; got {seed!r}.")


@dataclass(frozen=True)
class EmbedConfig:
    """Which model turns images into vectors, and how work is batched."""

    model: str = _help(
        "auto (CLIP if its weights are here, else efficientnet-lite0), a registry name, "
        "a Hugging Face id or a local model folder.", "auto")
    batch_size: int | None = _help(
        "Images per forward pass; unset uses the model's own choice for the device (efficientnet-lite0 on "
        "CPU: 4, CLIP-like on CPU: 16, on a GPU: 256).", None)
    device: str = _help("cpu, cuda, cuda:N, mps or auto.", "auto")
    commit_every: int = _help("Embeddings are written to the store every this many images (or every 5 s, "
                              "whichever comes first); an interruption loses at most that much work.", 256)
    workers: int = _help("Threads decoding images while the model runs; 1-16.", 2)
    pooling: str | None = _help(
        "How token vectors become one image vector: image-features (CLIP/SigLIP), pooler, cls, mean or sum; "
        "unset uses the model's default (see `imgcluster models`). Each choice is cached separately.", None)
    backend: str = _help(
        "Who runs the model: torch (PyTorch, float32, any device), onnxruntime or openvino (the model exported "
        "to ONNX once and run on the CPU, int8 where measured faster: 5x efficientnet-lite0, 3x CLIP ViT-B/32 on "
        "2 busy cores), or auto (the first of onnxruntime, openvino that is installed and matches float32 PyTorch "
        "within tolerance, else torch). The optimised ones need `pip install 'imgcluster[fast]'`; each backend's "
        "vectors are cached separately.", "torch")
    precision: str = _help(
        "With an optimised backend: auto (int8 where it is faster, see docs/guide/models.md), float32 or int8.",
        "auto")

    def __post_init__(self) -> None:
        check_pooling(self.pooling)
        check_backend(self.backend, self.precision)
        check_device_name(self.device)
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1; got {self.batch_size}.")
        if self.commit_every < 1:
            raise ConfigError(f"commit_every must be at least 1; got {self.commit_every}.")
        if not 1 <= self.workers <= MAX_DECODE_WORKERS:
            raise ConfigError(f"workers (decoding threads) must be 1-{MAX_DECODE_WORKERS}; got {self.workers}.")


@dataclass(frozen=True)
class RayConfig:
    """Where ``imgcluster embed --engine ray`` runs: Ray workers embed, this process writes the workspace."""

    address: str | None = _help(
        "Ray cluster to join: auto (the one `ray start` runs here), ray://HOST:10001 or HOST:6379; unset starts a "
        "local Ray for the command and stops it after.", None)
    workers: int | None = _help(
        "Ray workers, each holding one copy of the model (one GPU each when the cluster has GPUs); unset: one per "
        "GPU, else one per CPU core.", None)
    retries: int = _help(
        "Times a batch of images is run again after the Ray worker embedding it died (a crash, out of memory, a "
        "node lost); the worker is restarted each time. Past this the command stops with an error, keeping what "
        "it wrote. 0-10.", 3)

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be at least 1; got {self.workers}. Leave it unset for one per core.")
        if self.retries < 0:
            raise ConfigError(f"retries must be at least 0; got {self.retries}.")


@dataclass(frozen=True)
class ReduceConfig:
    """The space clustering runs in, and the 2-D map."""

    method: str = _help("Reducer for the clustering space: umap, pca, standard (each dimension scaled to unit "
                        "variance, as the GumGum article does) or none (cluster the embeddings themselves).", "umap")
    n_components: int = _help("Dimensions of the clustering space; 2-50 (5 works well with HDBSCAN).", 5)
    n_neighbors: int | None = _help(
        "UMAP neighbourhood size; unset picks 15, capped below the number of images.", None)
    min_dist: float = _help("UMAP min_dist for the clustering space (0 packs clusters tightly).", 0.0)
    n_epochs: int | None = _help(
        "UMAP optimisation epochs for the clustering space; unset: 500 below 1,000 images and 200 from there "
        "(umap-learn's own rule moves to 200 only above 10,000 images; between 1,000 and 10,000 its 500 clustered "
        "no better on the digits and the photo crops and took 40% longer: docs/benchmarks.md, UMAP epochs).", None)
    metric: str = _help("Distance between embeddings: cosine or euclidean.", "cosine")
    map_method: str = _help("Reducer for the 2-D map: umap, tsne or pca.", "umap")
    map_min_dist: float = _help("UMAP min_dist for the 2-D map (0.1 keeps points readable).", 0.1)
    map_n_epochs: int | None = _help(
        "UMAP epochs for the 2-D map; the map is for the eye, so fewer than the clustering space. "
        "Unset: as for n_epochs (500 below 1,000 images, 200 from there).", 100)
    seed: int = _help("Random seed; the same seed gives the same result.", 0)
    fit_sample: int = _help(
        "Above this many images, reduce and cluster a random sample of this size and file the rest with "
        "the run's predictor (k-NN vote); 0 fits everything. 10,000-50,000. A given min_cluster_size grows "
        "it until a group of that size holds 20 sample points (at most 100,000).", 15_000)

    def __post_init__(self) -> None:
        check_seed(self.seed)
        if self.fit_sample < 0:
            raise ConfigError(f"fit_sample must be 0 (fit everything) or a sample size; got {self.fit_sample}.")
        if self.n_components < 1:
            raise ConfigError(f"n_components must be at least 1; got {self.n_components}.")
        if self.n_neighbors is not None and self.n_neighbors < 2:
            raise ConfigError(f"n_neighbors must be at least 2; got {self.n_neighbors}.")


@dataclass(frozen=True)
class ClusterConfig:
    """How points in the clustering space become clusters.

    The union of every method's settings, so all can be named in one place; each clusterer declares
    the ones it takes, and ``cluster.settle`` refuses a setting given for a method that does not take
    it (see docs/design.md, "Stage parameters")."""

    method: str = _help(
        "auto (tries HDBSCAN settings and k-means over a range of k, keeps the answer whose clusters best keep "
        "each image's nearest neighbours and are separated by gaps; the score table and reason are stored with "
        "the run), "
        "hdbscan (finds the number of clusters, marks noise; min_cluster_size about 1% of the images unless set), "
        "kmeans (needs k), agglomerative, spectral, dbscan or optics.", "auto")
    k: int | None = _help("Number of clusters for kmeans, agglomerative and spectral; giving it without a method "
                          "selects kmeans.", None)
    min_cluster_size: int | None = _help(
        "Smallest group worth naming; unset picks about 1% of the images (at least 5). "
        "Setting it turns auto into plain hdbscan.", None)
    max_cluster_size: int | None = _help(
        "HDBSCAN: no cluster larger than this (splits what eom would merge); unset means no limit.", None)
    min_samples: int | None = _help(
        "HDBSCAN density smoothing; larger marks more points as noise. Unset picks it from min_cluster_size.",
        None)
    cluster_selection_method: str = _help("HDBSCAN: eom (larger clusters) or leaf (finer clusters).", "eom")
    alpha: float = _help("HDBSCAN alpha; above 1 makes clustering more conservative.", 1.0)
    seed: int = _help("Random seed for k-means.", 0)
    noise: str = _help(
        "keep: images no cluster claims stay unclustered (-1); attach: each joins the cluster its nearest "
        "clustered images vote for when that vote's probability reaches attach_threshold (column how = attached).",
        "keep")
    attach_threshold: float = _help("With noise=attach, the probability an unclustered image needs to join a "
                                    "cluster; 0-1, higher attaches fewer.", 0.5)
    held_quantile: float = _help(
        "Filing new images (predict, update, the web app's upload): the share of the run's own members the "
        "open-set test would hold. A new image is held, not filed, when its density, centred density, typicality "
        "and agreement, each ranked among its cluster's members and combined, make it less typical than all but "
        "this share of the members; 0-0.5 (0.03 filed 96-97% of unseen images like the run's; 0 files by the "
        "nearest-image vote alone). Stored with the run; predict and update can override it.", 0.03)

    def __post_init__(self) -> None:
        check_seed(self.seed)
        if self.k is not None and self.k < 1:
            raise ConfigError(f"k must be at least 1; got {self.k}.")
        if self.min_cluster_size is not None and self.min_cluster_size < 2:
            raise ConfigError(f"min_cluster_size must be at least 2; got {self.min_cluster_size}. "
                              "Leave it unset to let imgcluster choose.")
        if self.max_cluster_size is not None and self.max_cluster_size < (self.min_cluster_size or 2):
            raise ConfigError(f"max_cluster_size ({self.max_cluster_size}) must be at least min_cluster_size "
                              f"({self.min_cluster_size or 2}); leave it unset for no limit.")
        if self.min_samples is not None and self.min_samples < 1:
            raise ConfigError(f"min_samples must be at least 1; got {self.min_samples}.")
        if self.noise not in ("keep", "attach"):
            raise ConfigError(f"noise must be 'keep' or 'attach'; got {self.noise!r}.")
        if not 0.0 <= self.attach_threshold <= 1.0:
            raise ConfigError(f"attach_threshold is a probability between 0 and 1; got {self.attach_threshold}.")
        if not 0.0 <= self.held_quantile <= 0.5:
            raise ConfigError(f"held_quantile must be between 0 and 0.5; got {self.held_quantile}. 0.01 holds new "
                              "images less typical of their cluster than 99% of its members; 0 turns this off.")
        if self.cluster_selection_method not in ("eom", "leaf"):
            raise ConfigError("cluster_selection_method must be 'eom' or 'leaf'; "
                              f"got {self.cluster_selection_method!r}.")


@dataclass(frozen=True)
class NameConfig:
    """How clusters get names. The VLM's key is read from IMGCLUSTER_VLM_KEY and never stored."""

    namer: str = _help(
        "auto (imagenet for efficientnet-lite0, zero-shot for CLIP/SigLIP models, none otherwise), imagenet "
        "(the bundled CNN's ImageNet classes over each cluster's representatives), zero-shot (the run's CLIP "
        "text tower against a vocabulary), vlm (a vision-language model over an OpenAI-compatible API; only "
        "when asked) or none.", "auto")
    images_per_cluster: int = _help(
        "Images the imagenet namer classifies per cluster (members chosen by content hash, so that the same "
        "members get the same name whatever the seed); 1-32. More: steadier names, slower first naming.", 16)
    vocabulary: str | None = _help(
        "Zero-shot: a text file of candidate names, one per line ('#' starts a comment), used instead of the "
        "built-in vocabulary (ImageNet's 1,000 classes plus broad words such as meme, screenshot, food).", None)
    vlm_url: str | None = _help("VLM: the OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 "
                                "(default: $IMGCLUSTER_VLM_URL).", None)
    vlm_model: str | None = _help("VLM: the model name the endpoint serves (default: $IMGCLUSTER_VLM_MODEL).", None)
    vlm_images: int = _help("VLM: representative thumbnails sent per cluster; 1-8.", 4)
    vlm_min_interval: float = _help("VLM: at least this many seconds between two requests (rate limit).", 1.0)

    def __post_init__(self) -> None:
        if not 1 <= self.images_per_cluster <= 32:
            raise ConfigError(f"images_per_cluster must be 1-32; got {self.images_per_cluster}.")
        if not 1 <= self.vlm_images <= 8:
            raise ConfigError(f"vlm_images must be 1-8; got {self.vlm_images}.")
        if self.vlm_min_interval < 0:
            raise ConfigError(f"vlm_min_interval is a number of seconds, at least 0; got {self.vlm_min_interval}.")


DETECTORS = ("exact", "perceptual", "crops", "embedding")


@dataclass(frozen=True)
class DedupConfig:
    """What counts as a duplicate (imgcluster duplicates, cluster --dedup). Nothing is ever deleted."""

    detectors: tuple[str, ...] = _help(
        "Which detectors link images: exact (byte-identical files, by content hash), perceptual (a 64-bit DCT "
        "hash of the picture or of its mirror: the same picture resized, recompressed, slightly recoloured or "
        "mirrored), crops (hashes of overlapping 90% crops, each candidate verified by matching local "
        "features with RANSAC: cropped copies; needs OpenCV, pip install 'imgcluster[dedup]') and embedding "
        "(the model's vectors: other edits).", DETECTORS)
    hamming: int = _help(
        "perceptual: the most bits (of 64) two perceptual hashes may differ by; 0-16. Re-encoded, resized and "
        "slightly recoloured copies differ by 0-4, mirrored ones 0-2; different pictures by 6 or more (about 32 "
        "when unrelated).", 5)
    crop_hamming: int = _help(
        "crops: the most bits (of 64) between an image's hash (or its mirror's) and the nearest of another's "
        "nine 90%-crop hashes for the pair to be checked geometrically; 0-24. 90% crops measure 4-14 bits; "
        "higher checks more candidates (slower), and only pairs whose local features agree are linked.", 12)
    similarity: float = _help(
        "embedding: the least cosine similarity between an image's embedding and its group keeper's; 0.5-1, "
        "higher finds fewer. With efficientnet-lite0 re-encoded or mirrored copies score 0.85-1, 90% crops "
        "0.85-0.97, and two halves of one texture (a brick wall) up to 0.99; with OpenCV installed a pair whose "
        "local features refute it is not joined, without it 0.96 keeps precision on photos and 0.9 joins some "
        "look-alikes (bench/dedup.py measures both).", 0.96)

    def __post_init__(self) -> None:
        unknown = [d for d in self.detectors if d not in DETECTORS]
        if unknown or not self.detectors:
            raise ConfigError(f"Unknown duplicate detector(s) {', '.join(map(repr, unknown)) or '(none given)'}. "
                              f"Choose from: {', '.join(DETECTORS)}.")
        if not 0 <= self.hamming <= 16:
            raise ConfigError(f"hamming must be 0-16 bits; got {self.hamming}.")
        if not 0 <= self.crop_hamming <= 24:
            raise ConfigError(f"crop_hamming must be 0-24 bits; got {self.crop_hamming}.")
        if not 0.0 < self.similarity <= 1.0:
            raise ConfigError(f"similarity must be a cosine similarity in (0, 1]; got {self.similarity}.")


@dataclass(frozen=True)
class RunConfig:
    """Everything one `cluster` call needs; what a run stores so it can be replayed."""

    scan: ScanConfig = field(default_factory=ScanConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    reduce: ReduceConfig = field(default_factory=ReduceConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    preset: str | None = None
    name: NameConfig = field(default_factory=NameConfig)
    dedup: DedupConfig | None = None  # set: cluster one image per duplicate group (cluster --dedup)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        embed = dict(data.get("embed", {}))
        if isinstance(embed.get("workers"), int):
            # Runs stored before the 1-16 range was enforced may hold more; threads change speed, never results.
            embed["workers"] = min(max(embed["workers"], 1), MAX_DECODE_WORKERS)
        return cls(
            scan=ScanConfig(**data.get("scan", {})),
            embed=EmbedConfig(**embed),
            reduce=ReduceConfig(**data.get("reduce", {})),
            cluster=ClusterConfig(**data.get("cluster", {})),
            preset=data.get("preset"),
            name=NameConfig(**data.get("name", {})),
            dedup=DedupConfig(**{**data["dedup"], "detectors": tuple(data["dedup"]["detectors"])})
            if data.get("dedup") else None,
        )


# Presets are data: stage name -> field overrides. `ifunny` is the seed article's recipe verbatim.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {},
    "ifunny": {
        "reduce": {"method": "umap", "n_neighbors": 70, "n_epochs": 300, "min_dist": 0.03,
                   "n_components": 5, "seed": 35, "metric": "euclidean", "fit_sample": 0,
                   "map_n_epochs": None},
        "cluster": {"method": "hdbscan", "min_cluster_size": 1000, "alpha": 2.0,
                    "cluster_selection_method": "leaf"},
    },
    # The GumGum article: StandardScaler on the full embeddings, then k-means with k=100.
    "gumgum": {
        "reduce": {"method": "standard", "fit_sample": 0},
        "cluster": {"method": "kmeans", "k": 100},
    },
}


def apply_preset(config: RunConfig, name: str | None) -> RunConfig:
    """Return ``config`` with the preset's fields set; ``None`` returns it unchanged."""
    if name is None:
        return config
    if name not in PRESETS:
        raise UnknownName(f"No preset called {name!r}. Choose one of: {', '.join(sorted(PRESETS))}.")
    overrides = PRESETS[name]
    return dataclasses.replace(
        config,
        preset=name,
        **{stage: dataclasses.replace(getattr(config, stage), **values) for stage, values in overrides.items()},
    )


# RunConfig's stage fields -> their dataclass (dedup is None until --dedup turns it on).
STAGES: dict[str, type] = {"scan": ScanConfig, "embed": EmbedConfig, "reduce": ReduceConfig,
                           "cluster": ClusterConfig, "name": NameConfig, "dedup": DedupConfig}


def configure(config: RunConfig | None = None, preset: str | None = None,
              overrides: Mapping[str, Mapping[str, Any]] | None = None) -> RunConfig:
    """The one place settings are merged: ``config`` (default ``RunConfig()``), then the preset's
    fields, then ``overrides`` (stage -> field -> value, None included: it unsets an optional
    field). Options the user did not give are left out of ``overrides``, so ``--preset ifunny
    --seed 3`` keeps the preset's other settings."""
    config = apply_preset(config or RunConfig(), preset)
    for stage, given in (overrides or {}).items():
        if not given:
            continue
        if stage not in STAGES:
            raise UnknownName(f"No stage called {stage!r}. Choose one of: {', '.join(STAGES)}.")
        _check_fields(stage, given)
        current = getattr(config, stage)
        if current is None:  # dedup: its settings mean nothing without it
            raise ConfigError(f"{stage}.{next(iter(given))} is a setting of --{stage}; add --{stage} or drop it.")
        config = dataclasses.replace(config, **{stage: dataclasses.replace(current, **given)})
    return config


def _check_fields(stage: str, names: Iterable[str]) -> None:
    known = [f.name for f in dataclasses.fields(STAGES[stage])]
    for name in names:
        if name not in known:
            raise UnknownName(f"{STAGES[stage].__name__} has no setting {name!r}. Choose one of: "
                              f"{', '.join(known)}.")


def overrides(options: Mapping[str, Mapping[str, Any]], pairs: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """A command's options (stage -> field -> value; None: not given, left out) and its ``--set``
    pairs (``parse_settings``) as one set of overrides for ``configure``; a setting given both ways
    is refused rather than one silently winning."""
    merged = {stage: {name: value for name, value in values.items() if value is not None}
              for stage, values in options.items()}
    for stage, values in parse_settings(pairs).items():
        for name, value in values.items():
            if name in merged.get(stage, {}) and merged[stage][name] != value:
                raise ConfigError(f"{stage}.{name} is given twice, by an option ({merged[stage][name]!r}) and by "
                                  f"--set ({value!r}); give it once.")
            merged.setdefault(stage, {})[name] = value
    return {stage: values for stage, values in merged.items() if values}


def parse_settings(pairs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["cluster.min_samples=5", "reduce.n_neighbors=none"]`` as overrides for ``configure``:
    each value read as its field's type (``none`` unsets an optional field; tuples are comma-separated)."""
    parsed: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        stage, dot, name = key.strip().partition(".")
        if not equals or not dot or not name:
            raise ConfigError(f"Give --set STAGE.FIELD=VALUE, e.g. cluster.min_samples=5; got {pair!r}.")
        if stage not in STAGES:
            raise UnknownName(f"No stage called {stage!r} in {pair!r}. Choose one of: {', '.join(STAGES)}.")
        _check_fields(stage, [name])
        if name in parsed.get(stage, {}):
            raise ConfigError(f"{stage}.{name} is set twice; keep one --set {stage}.{name}=….")
        parsed.setdefault(stage, {})[name] = parse_value(STAGES[stage], name, text.strip())
    return parsed


def parse_value(cls: type, name: str, text: str) -> Any:
    """``text`` as the value of field ``name`` of ``cls``, by the field's type."""
    kind = typing.get_type_hints(cls)[name]
    args = typing.get_args(kind)
    optional = type(None) in args
    if optional and text.lower() in ("none", "null", ""):
        return None
    base = next((a for a in args if a is not type(None)), kind) if optional else kind
    if typing.get_origin(base) is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    try:
        if base is bool:
            if text.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "yes", "1")
        return base(text)
    except ValueError:
        what = {int: "a whole number", float: "a number", bool: "true or false"}.get(base, base.__name__)
        raise ConfigError(f"{cls.__name__}.{name} must be {what}{' or none' if optional else ''}; got {text!r}.") \
            from None
