"""``python -m posture.ingest``: turn a labeling team's folder of photos into a clean, split dataset.

Stages, one module each: :mod:`~posture.ingest.sources` (find files, read label CSVs, subjects),
:mod:`~posture.ingest.decode` (decode/check/re-encode in worker processes),
:mod:`~posture.ingest.dedup` (exact and near duplicates), :mod:`~posture.ingest.split`
(subject-grouped, stratified splits), :mod:`~posture.ingest.report` (manifest, rejections,
summary) and :mod:`~posture.ingest.pipeline` (the :func:`ingest` call that ties them together).
"""

from posture.ingest.config import IngestConfig, IngestResult
from posture.ingest.pipeline import REJECTED_NAME, SUMMARY_NAME, ingest

__all__ = ["IngestConfig", "IngestResult", "ingest", "REJECTED_NAME", "SUMMARY_NAME"]
