"""Deprecated: the run's measurements moved to ``imgcluster.run.metrics`` and the comparison and
stability maths to ``imgcluster.run.compare``. This module re-exports them for older scripts."""

from .run.compare import (ABSENT, SPLIT_MIN_IMAGES, SPLIT_SHARE, UNSTABLE_BELOW, AssignmentComparison,  # noqa: F401
                          ClusterMatch, ClusterParts, ClusterStability, Consensus, cluster_stability,
                          compare_assignments, consensus, contingency, jaccard, match_clusters, relabel,
                          variation_of_information)
from .run.metrics import (MOSTLY_UNCLUSTERED, REPRESENTATIVES_PER_CLUSTER, answer_warnings,  # noqa: F401
                          external_metrics, internal_metrics, new_run_key, package_versions, summarise_clusters,
                          used_cluster_settings)
from .store.records import ClusterSummary  # noqa: F401
