"""Segmenting one CT in memory: a model folder's networks loaded once, a case in, a result out.

:mod:`~ichseg.segmentation.settings` (how the networks are used), :mod:`~ichseg.segmentation.result`
(what a case gives), :mod:`~ichseg.segmentation.segmenter` (the steps). Writing files and running
many cases is :mod:`ichseg.report` and :mod:`ichseg.batch`.
"""
