"""The gallery: people, faces and embeddings, their scores, keys and users, live state, the
recognition log and request statistics.

The database is the source of truth; the search index is rebuilt from
:meth:`Gallery.embeddings` and checked against :meth:`Gallery.face_ids`.
"""

from __future__ import annotations

from orchestrator.db.accounts import Accounts
from orchestrator.db.face_scores import FaceScores
from orchestrator.db.faces import Faces
from orchestrator.db.jobs import Jobs
from orchestrator.db.keys import Keys
from orchestrator.db.people import People
from orchestrator.db.recognition_log import RecognitionLogs
from orchestrator.db.request_stats import RequestStatistics
from orchestrator.db.rollouts import Rollouts
from orchestrator.db.state import State


class Gallery(
    People, Faces, FaceScores, State, Keys, Accounts, RecognitionLogs, RequestStatistics, Rollouts, Jobs
):
    """Every operation opens its own session; synchronous, call from a worker thread.

    >>> gallery = Gallery(make_engine(url)); migrate(gallery.engine)
    """
