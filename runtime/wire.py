"""Moved to :mod:`jubako.workers.wire` (core: ``jubako run`` speaks it too). This alias
is left only for ``jubako/batch/inprocess.py``'s import; delete it once that reads
``from jubako.workers import wire``."""

from jubako.workers.wire import *  # noqa: F403
