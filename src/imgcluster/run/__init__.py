"""The run: imgcluster's central object, and the one recipe that makes one.

``record``  ``Run``, what the API hands out (the typed ``RunRecord`` lives in ``store.records``,
            where it crosses into the catalogue)
``save``    ``Draft`` and ``save_run``: summaries → metrics → representatives → record → predictor →
            names → outputs → the store, for every way a run is made (fit, update, review, edit, follow)
``derive``  derivations that turn a run (or a fit) into a draft: follow, edit
``filing``  an update's derivation: file new images, propose clusters, review proposals, the draft
``metrics`` a run's own figures (summaries, internal and external metrics, warnings, versions)
``compare`` two runs compared, and the stability of a run's clusters under refits
``outputs`` clusters.csv, clusters.parquet and report.html
"""

from ..store.records import (EDIT, FIT, FOLLOW, HOWS, REVIEW, UPDATE, ClusterSummary, Embedded, Naming,
                             ProposedCluster, Provenance, Representatives, RunRecord)
from .record import Run
from .save import Draft, save_run

__all__ = ["EDIT", "FIT", "FOLLOW", "HOWS", "REVIEW", "UPDATE", "ClusterSummary", "Draft", "Embedded", "Naming",
           "ProposedCluster", "Provenance", "Representatives", "Run", "RunRecord", "save_run"]
