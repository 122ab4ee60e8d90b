"""The run: imgcluster's central object, and the one recipe that makes one.

``record``  ``Run``, what the API hands out (the typed ``RunRecord`` lives in ``store.records``,
            where it crosses into the catalogue)
``save``    ``Draft`` and ``save_run``: summaries → metrics → tree → representatives → record → predictor →
            names → outputs → the store, for every way a run is made (fit, update, review, edit, follow)
``derive``  derivations that turn a run (or a fit) into a draft: follow, edit
``filing``  an update's derivation: file new images, propose clusters, review proposals, the draft
``metrics`` a run's own figures (summaries, internal and external metrics, warnings, versions)
``compare`` two runs compared, and the stability of a run's clusters under refits
``outputs`` clusters.csv, clusters.parquet and report.html
``tree``    the cluster tree of a run: built when it is saved, its nodes' names, proposals attached
"""

from ..store.records import (EDIT, FIT, FOLLOW, HOWS, REVIEW, UPDATE, ClusterSummary, ClusterTree, Embedded, Naming,
                             ProposedCluster, Provenance, Representatives, RunRecord, TreeNode)
from .record import Run
from .save import Draft, save_run

__all__ = ["EDIT", "FIT", "FOLLOW", "HOWS", "REVIEW", "UPDATE", "ClusterSummary", "ClusterTree", "Draft", "Embedded",
           "Naming", "ProposedCluster", "Provenance", "Representatives", "Run", "RunRecord", "TreeNode", "save_run"]
