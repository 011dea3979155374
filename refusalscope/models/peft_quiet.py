"""peft 0.21 reads transformers 5's deprecated `is_gradient_checkpointing` property whenever it
wraps, loads or saves an adapter, and transformers warns each time (a FutureWarning per call,
printed into every command's output). `quiet_peft()` silences that one warning, nothing else."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_peft() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing",
                                category=FutureWarning)
        yield
