"""refusalscope.scoring: label responses as refusals and compute refusal rates with CIs.

Public API: `Label`, `Scorer` (protocol), `HeuristicScorer`, `score_run`, `score_file`,
`bootstrap_ci`, `wilson_interval`. The trained classifier (`scoring.classifier`:
`load_classifier`, `TrainConfig`; `scoring.classifier_train`: `train_classifier`), the
ensemble (`scoring.ensemble`), labelled data (`scoring.labelled`) and calibration/CE
(`scoring.calibration`) need torch or transformers and are imported from their modules, not
here. numpy is imported by the stats module, so import the submodules you need from the CLI
lazily.
"""

from refusalscope.scoring.base import Label, Scorer
from refusalscope.scoring.heuristic import HeuristicScorer
from refusalscope.scoring.inputs import load_run
from refusalscope.scoring.metrics import BootstrapSpec, binary_report
from refusalscope.scoring.score import ScoreResult, score_file, score_loaded, score_run
from refusalscope.scoring.stats import bootstrap_ci, wilson_interval

__all__ = ["BootstrapSpec", "HeuristicScorer", "Label", "ScoreResult", "Scorer", "binary_report",
           "bootstrap_ci", "load_run", "score_file", "score_loaded", "score_run",
           "wilson_interval"]
