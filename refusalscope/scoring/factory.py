"""One place that turns a scorer's name into a scorer.

Names: `heuristic` (refusal phrases), `classifier` (the trained MiniLM classifier alone),
`ensemble` (classifier + heuristic: what the study and the attacks report) and `study`
(the ensemble when the classifier is trained, else the heuristic with a warning: what an
attack evaluation uses so that it runs before `score train-classifier` has). The LLM judge
needs a served model and its own config, so `cli/score.py` builds it.

Example:
    scorer("heuristic").name  # 'heuristic'
"""

from __future__ import annotations

import logging
from typing import Any

from refusalscope.errors import UserError

log = logging.getLogger(__name__)
NAMES = ("heuristic", "classifier", "ensemble", "study")


def scorer(name: str, *, classifier: Any = None, heuristic: Any = None) -> Any:
    """The scorer called `name` (one of `NAMES`).

    `classifier`: the trained classifier's name (None or "default":
    `scoring.classifier.DEFAULT_NAME`), or a loaded `RefusalClassifier` (one just trained, or
    one several scorers share, so it is loaded once); `heuristic`: a configured
    `HeuristicScorer` (own phrase lists or window) to use instead of the default one. `study`
    with `classifier` "none" is the heuristic, without a warning. A missing classifier is a
    `UserError` for `classifier` and `ensemble`.
    """
    from refusalscope.scoring.heuristic import HeuristicScorer

    if name not in NAMES:
        raise UserError(f"unknown scorer {name!r}: one of {', '.join(NAMES)}")
    h = heuristic if heuristic is not None else HeuristicScorer()
    if name == "heuristic" or (name == "study" and classifier == "none"):
        return h
    from refusalscope.scoring.classifier import DEFAULT_NAME, load_classifier
    from refusalscope.scoring.ensemble import EnsembleScorer

    if not (classifier is None or isinstance(classifier, str)):  # already loaded
        return classifier if name == "classifier" else EnsembleScorer(classifier, h)
    clf_name = DEFAULT_NAME if classifier in (None, "default") else classifier
    if name == "study":
        try:
            return EnsembleScorer(load_classifier(clf_name), h)
        except UserError as e:
            log.warning("scoring with the heuristic alone: %s", e)
            return h
    clf = load_classifier(clf_name)
    return clf if name == "classifier" else EnsembleScorer(clf, h)


def stamp(name: str) -> dict[str, str]:
    """What decides `name`'s labels beyond its name: the rule versions (heuristic, ensemble,
    degeneracy / on-topic check) and, for scorers that read the classifier, the default
    classifier's name. A study keys its score nodes by it, so a newer default re-scores (the
    generations stay) instead of reporting labels of an older scorer."""
    from refusalscope.scoring import degeneracy, ensemble, heuristic

    rules = (f"heuristic {heuristic.RULE_VERSION}; ensemble {ensemble.RULE_VERSION}; "
             f"degeneracy {degeneracy.DEGENERACY_VERSION}")
    if name == "heuristic":
        return {"rules": rules}
    from refusalscope.scoring.classifier import DEFAULT_NAME

    return {"classifier": DEFAULT_NAME, "rules": rules}
