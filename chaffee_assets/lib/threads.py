"""How many CPU threads each model may use.

Every model library starts as many threads as it sees cores (CTranslate2 even 4 on any machine).
When several steps compute at once (ASR_WORKERS > 1), or one computes while other runs download,
decode and load, those threads outnumber the cores; OpenMP threads that spin-wait for each other
then make a model several times slower. One share of the cores per concurrent model avoids that.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_per_model(setting: int, concurrent_models: int) -> int:
    """`setting` when > 0, else the cores divided among the models that may compute at once."""
    if setting > 0:
        return setting
    return max(1, available_cores() // max(1, concurrent_models))


def limit_torch_threads(n: int) -> None:
    """torch's intra-op threads in this process (imports torch)."""
    import torch

    if n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)
        log.info("torch: %d intra-op threads", n)
