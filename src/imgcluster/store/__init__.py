"""The only code that opens workspace files: SQLite catalogue, vector shards, runs and their outputs."""

from .records import Assignments, ClusterName, ImageRecord, RunRecord, ScannedFile
from .workspace import Workspace, damage_message, default_workspace, is_corruption

__all__ = ["Assignments", "ClusterName", "ImageRecord", "RunRecord", "ScannedFile", "Workspace", "damage_message",
           "default_workspace", "is_corruption"]
