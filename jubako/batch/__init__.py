"""Offline batch prediction: ``jubako run BENTO --api NAME --input PATH --output PATH``.

Reads JSON Lines, CSV or Parquet (local or ``s3://``) in chunks, scores the rows on the
runtime's own worker processes in batches of the API's ``max_batch_size``, and writes the
results in input order, resumably. docs/batch.md has the details.
"""

from .runner import Options, Summary, run

__all__ = ["Options", "Summary", "run"]
