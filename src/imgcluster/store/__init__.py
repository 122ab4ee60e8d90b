"""The only code that opens workspace files: SQLite catalogue, vector shards, runs and their outputs."""

from .records import (HOWS, Assignments, ClusterName, ClusterSummary, ClusterTree, Embedded, ImageRecord, Naming,
                      Provenance, ProposedCluster, Representatives, RunRecord, ScannedFile, TreeNode)
from .workspace import Workspace, damage_message, default_workspace, is_corruption, locate_workspace

__all__ = ["HOWS", "Assignments", "ClusterName", "ClusterSummary", "ClusterTree", "Embedded", "ImageRecord", "Naming",
           "ProposedCluster", "Provenance", "Representatives", "RunRecord", "ScannedFile", "TreeNode", "Workspace",
           "damage_message", "default_workspace", "is_corruption", "locate_workspace"]
