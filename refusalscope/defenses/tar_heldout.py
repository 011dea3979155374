"""TAR against held-out adversaries: which LoRA attacks of a study are TAR's own adversary, which
are held out, and the RRR table of defended vs undefended models under each.

TAR claims robustness to attacks it did not train against, so a study that evaluates it only with
its training adversary (same pairs, learning rate, steps, rank and modules) measures
in-distribution robustness and overstates it. Each LoRA attack of a spec is compared with the
TAR defense's adversary on four axes:

- data: the attack's training pairs against TAR's (`attacks.pairs.load_pairs` with each side's
  n, seed, target kind and file): ``same`` prompts, ``disjoint`` (no prompt, compared
  lower-cased with punctuation dropped, in common) or ``overlap``;
- learning rate: outside TAR's (`inner_lr`, or every `adv_lrs` value);
- steps: every evaluated step count at least `STEPS_FACTOR` x TAR's longest inner loop;
- LoRA rank or modules: a rank outside TAR's ranks, or modules other than attn (TAR's attack
  adapter sits on `attack lora`'s default attention modules unless `adv_modules` says more).

``in-distribution``: same data and no axis differs (steps at most TAR's inner steps);
``held-out``: all four differ; anything between is ``partial`` with the axes that differ.

Example:
    rows = heldout_rows(load_spec("defenses"), expand(spec), study_dir("defenses"))
    print(markdown(rows))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STEPS_FACTOR = 4  # held-out attacks run at least this many times TAR's inner steps
ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")  # `attack lora`'s default on the ladder models
AXES = ("data", "lr", "steps", "rank/modules")


@dataclass(frozen=True)
class Comparison:
    """How one LoRA attack relates to TAR's training adversary (see the module docstring)."""

    attack: str
    data: str  # same | disjoint | overlap
    differs: tuple[str, ...]  # of AXES
    label: str  # in-distribution | held-out | partial

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def data_relation(tar_pairs: Sequence[Any], attack_pairs: Sequence[Any]) -> str:
    """``same`` (the same prompts), ``disjoint`` (no prompt shared) or ``overlap``, for two
    lists of `attacks.pairs.Pair`. Prompts are compared lower-cased with punctuation dropped;
    ids are not compared (a user file's rows are ``row1``, ``row2``, ... whatever they hold)."""
    from refusalscope.attacks.pairs import prompt_key

    a = {prompt_key(p.prompt) for p in tar_pairs}
    b = {prompt_key(p.prompt) for p in attack_pairs}
    if a == b:
        return "same"
    return "overlap" if a & b else "disjoint"


def tar_pairs(tar: dict[str, Any]) -> list[Any]:
    """TAR's training pairs (inner attack and refusal prompts) from its spec params."""
    from refusalscope.attacks.pairs import load_pairs

    return load_pairs(tar["n_data"], seed=tar["seed"], target_kind=tar["target_kind"],
                      data_file=tar.get("data"))


def attack_pairs(attack: Any, seed: int) -> list[Any]:
    """The largest pair set a LoRA `AttackSpec` trains on at study seed `seed` (its other
    n_data values are prefixes of it)."""
    from refusalscope.attacks.pairs import load_pairs

    return load_pairs(max(attack.grid["n_data"]), seed=seed,
                      target_kind=attack.fixed["target_kind"], data_file=attack.fixed["data"])


def _modules(target_modules: Sequence[str] | None) -> frozenset[str]:
    return frozenset(target_modules or ATTN)


def compare(attack: Any, tar: dict[str, Any], data: str, steps: int) -> Comparison:
    """Classify the `steps` cell of LoRA `AttackSpec` `attack` against TAR spec params `tar`
    (`data`: the attack's `data_relation` to TAR's pairs)."""
    lrs = set(tar.get("adv_lrs") or [tar["inner_lr"]])
    ranks = set(tar.get("adv_ranks") or [tar["inner_rank"]])
    inner = max(tar.get("adv_steps") or [tar["inner_steps"]])
    tar_modules = set(tar.get("adv_modules") or ["attn"])
    modules = _modules(attack.fixed.get("target_modules"))
    # TAR's drawn "mlp"/"all" sets are model-dependent names: any explicit set may match them
    other_modules = modules != _modules(None) and tar_modules == {"attn"}
    differs = []
    if data == "disjoint":
        differs.append("data")
    if not lrs & set(attack.grid["lr"]):
        differs.append("lr")
    if steps >= STEPS_FACTOR * inner:
        differs.append("steps")
    if not ranks & set(attack.grid["rank"]) or other_modules:
        differs.append("rank/modules")
    if data == "same" and not differs and steps <= inner:
        label = "in-distribution"
    elif len(differs) == len(AXES):
        label = "held-out"
    else:
        label = "partial"
    return Comparison(attack.name, data, tuple(differs), label)


def compare_spec(spec: Any) -> dict[tuple[str, int], Comparison]:
    """Every cell (attack name, steps) of `spec`'s LoRA attacks against its (first) TAR
    defense; reads the built data to compare pairs. {} when the spec has no TAR defense."""
    tars = [d for d in spec.defenses if d.kind == "tar"]
    if not tars:
        return {}
    tar = tars[0].params
    mine = tar_pairs(tar)
    out = {}
    for a in spec.attacks:
        if a.kind == "lora" and a.after is None:
            data = data_relation(mine, attack_pairs(a, spec.seeds[0]))
            out.update({(a.name, s): compare(a, tar, data, s) for s in a.grid["steps"]})
    return out


def _attack_of(lora: Any, attacks: Sequence[Any]) -> Any:
    """The spec's LoRA attack a study `attack-lora` node was made from (by its params)."""
    for a in attacks:
        if a.kind == "lora" and all(lora.params.get(k) in v for k, v in a.grid.items()
                                    if k != "steps") \
                and all(lora.params.get(k) == v for k, v in a.fixed.items()):
            return a
    return None


def heldout_rows(spec: Any, nodes: Sequence[Any], study: Path,
                 comparisons: dict[tuple[str, int], Comparison] | None = None
                 ) -> list[dict[str, Any]]:
    """One row per finished score node of a LoRA cell or baseline: model (``undefended`` or
    ``TAR``), attack, its label and axes, steps, RRR with its bootstrap and Wilson 95% CIs."""
    from refusalscope.study.report import node_metrics, scored_nodes

    comparisons = compare_spec(spec) if comparisons is None else comparisons
    by_id = {n.id: n for n in nodes}
    rows = []
    for n, rec, gen in scored_nodes(nodes, study):
        if "attack" in gen.inputs or "steer" in gen.inputs:
            continue  # prompt attacks and the steering defense: not about TAR's adversary
        atk = _attack_of(by_id[gen.inputs["adapter"]], spec.attacks) \
            if "adapter" in gen.inputs else None
        if "adapter" in gen.inputs and atk is None:
            continue
        steps = gen.params.get("adapter_steps")
        comp = comparisons.get((atk.name, steps)) if atk is not None else None
        rrr = node_metrics(n, rec).get("rrr") or {}
        lora = by_id[gen.inputs["adapter"]].params if atk is not None else {}
        rows.append({
            "model": "TAR" if "defended" in gen.inputs else "undefended",
            "attack": atk.name if atk is not None else "none",
            "label": comp.label if comp is not None else ("baseline" if atk is None else "?"),
            "differs": ",".join(comp.differs) if comp is not None else "",
            "data": comp.data if comp is not None else "",
            "lr": lora.get("lr"), "rank": lora.get("rank"),
            "modules": ",".join(lora.get("target_modules") or ["attn"]) if lora else "",
            "steps": steps, "scorer": n.params["scorer"],
            "n": rrr.get("n"), "rrr": rrr.get("rate"), "ci": rrr.get("ci"),
            "wilson95": rrr.get("wilson95")})
    order = {"baseline": 0, "in-distribution": 1, "partial": 2, "held-out": 3}
    return sorted(rows, key=lambda r: (order.get(r["label"], 4), r["attack"], r["steps"] or 0,
                                       r["model"] != "undefended"))


def _ci(v: Sequence[float] | None) -> str:
    return f"[{v[0]:.3f}, {v[1]:.3f}]" if v else "–"


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The RRR table: defended vs undefended under in-distribution and held-out attacks."""
    cols = ("label", "attack", "steps", "lr", "rank", "modules", "data", "model", "n", "RRR",
            "95% CI (bootstrap)", "95% CI (Wilson)")
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        rate = "–" if r["rrr"] is None else f"{r['rrr']:.3f}"
        cells = (r["label"], r["attack"], r["steps"], r["lr"], r["rank"], r["modules"],
                 r["data"], r["model"], r["n"], rate, _ci(r["ci"]), _ci(r["wilson95"]))
        out.append("| " + " | ".join("–" if c in (None, "") else str(c) for c in cells) + " |")
    return "\n".join(out) + "\n"
