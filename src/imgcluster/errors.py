"""The exceptions imgcluster raises, one tree so callers can catch what they can handle.

    ImgclusterError                 anything imgcluster refuses to do, with the next step in its message
    ├── ConfigError (ValueError)    a setting is out of range or contradicts another
    ├── UnknownName (ValueError)    a model, reducer, clusterer or preset name that is not registered
    ├── ModelUnavailable            model weights are not on this machine (and could not be fetched)
    ├── NotFitted (RuntimeError, AttributeError)  a stage's predict/transform was called before its fit
    ├── NoImages                    a folder holds no image imgcluster could use
    ├── RunNotFound (KeyError)      no run with that key in the workspace
    ├── WorkerDied                  a batch killed its Ray worker more times than RayConfig.retries allows
    ├── WorkspaceBusy               another imgcluster process is writing this workspace
    ├── WorkspaceDamaged            a workspace file is missing or damaged; `imgcluster doctor --repair` mends it
    ├── WorkspaceTooNew             the workspace was made by a newer imgcluster; it is never downgraded
    └── WorkspaceNotFound (FileNotFoundError)  no workspace there yet (a reader never creates one)

A bad image is never an exception: it becomes a skip row with its reason (see `scan`).
"""

from __future__ import annotations


class ImgclusterError(Exception):
    """Base class: every error imgcluster raises on purpose."""


class ConfigError(ImgclusterError, ValueError):
    """A configuration value is invalid."""


class UnknownName(ImgclusterError, ValueError):
    """A registry lookup found nothing under that name."""


class ModelUnavailable(ImgclusterError):
    """The requested model's weights are not available offline."""


class NotFitted(ImgclusterError, RuntimeError, AttributeError):
    """A clusterer, reducer or predictor was asked to predict or transform before ``fit``.

    Also a RuntimeError and an AttributeError: what the stages raised before this class existed."""


class NoImages(ImgclusterError):
    """Nothing usable to cluster."""


class RunNotFound(ImgclusterError, KeyError):
    """No run with the given key."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WorkerDied(ImgclusterError):
    """A batch of images killed its Ray worker more times than ``RayConfig.retries`` allows."""


class WorkspaceBusy(ImgclusterError):
    """Another process holds the workspace's write lock."""


class WorkspaceDamaged(ImgclusterError):
    """A workspace file (catalogue, vector shard, run assignments, predictor index) is missing or damaged.
    The message names the file and the command that repairs it."""


class WorkspaceTooNew(ImgclusterError):
    """The workspace's schema is newer than this imgcluster understands; it is refused, never rewritten."""


class WorkspaceNotFound(ImgclusterError, FileNotFoundError):
    """No workspace at the path a reader was given (readers never create one)."""
