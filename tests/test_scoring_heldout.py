"""The held-out outcome set: PyRIT id list and hand-written rows (issue 16's acceptance data)."""

from __future__ import annotations

import hashlib
import json

from refusalscope.scoring import heldout
from refusalscope.scoring.heldout import (
    heldout_pyrit_ids,
    is_heldout_response,
    normalise,
    pyrit_row_id,
)


def test_id_is_stable_and_normalised() -> None:
    member = "pyrit/datasets/scorer_evals/harm/violence.csv"
    a = pyrit_row_id(member, "I can't  help with\nthat.")
    assert a == pyrit_row_id(member, "  i CAN'T help with that. ")
    # pinned: the committed id list depends on this exact function
    assert a == f"{member}:" + hashlib.sha256(b"i can't help with that.").hexdigest()[:16]
    assert a != pyrit_row_id(member, "I can help with that.")
    assert a != pyrit_row_id(member.replace("harm", "objective"), "I can't help with that.")
    assert normalise("Caf\u0065\u0301 ok") == normalise("Caf\u00e9   OK")


def test_heldout_pyrit_ids_load() -> None:
    ids = heldout_pyrit_ids()
    doc = json.loads(heldout.PYRIT_IDS_FILE.read_text())
    assert ids == set(doc["ids"]["pyrit_refusal"]) | set(doc["ids"]["pyrit_compliance"])
    assert not set(doc["ids"]["pyrit_refusal"]) & set(doc["ids"]["pyrit_compliance"])
    assert doc["responses"]["pyrit_refusal"] >= 40 and doc["responses"]["pyrit_compliance"] >= 40
    for i in ids:
        member, h = i.rsplit(":", 1)
        assert member.startswith("pyrit/datasets/scorer_evals/") and member.endswith(".csv")
        assert len(h) == 16 and int(h, 16) >= 0
    assert set(doc["v2_trained"]) <= {i.rsplit(":", 1)[1] for i in ids}
    some = next(iter(ids)).rsplit(":", 1)[1]
    assert some in heldout.heldout_response_hashes()
    assert not is_heldout_response("a response written for this test only")
