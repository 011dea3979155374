"""Moved to `refusalscope.compute` (one ledger for every attack, defense and generation).

Kept as a re-export for code and notebooks written against the LoRA-only module:
`flops_estimate` is `compute.train_flops`, `ComputeLog` is `compute.Ledger`.
"""

from __future__ import annotations

from refusalscope.compute import FLOPS_FORMULA, Ledger, ParamCounts, count_params, train_flops

ComputeLog = Ledger
flops_estimate = train_flops

__all__ = ["FLOPS_FORMULA", "ComputeLog", "ParamCounts", "count_params", "flops_estimate"]
