"""Many cases into an output folder: checked first, read ahead, written behind, resumable.

:mod:`~ichseg.batch.plan` checks a batch before any network loads; :mod:`~ichseg.batch.runner`
runs it in this process (:mod:`ichseg.distributed.ray_prediction` on a Ray cluster);
:mod:`~ichseg.batch.manifest` records it so that an interrupted batch can resume;
:mod:`~ichseg.batch.read_ahead` overlaps reading the next case with the networks' work.
"""
