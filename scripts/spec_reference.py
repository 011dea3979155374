"""Write docs/spec.md, the study spec reference, from the code that reads specs.

Every key and its default come from `refusalscope.study.spec` (the tables `parse_spec` checks
against, the attack registry for attack kinds, the `Spec`/`ModelSpec` dataclasses), so the page
changes when the code does; `tests/test_docs.py` fails while docs/spec.md is stale. What a key
means is written here (`MEANING`); a key the code has and this table lacks is still listed, with
"(no description yet)", and named on stderr.

    .venv/bin/python scripts/spec_reference.py            # rewrite docs/spec.md
    .venv/bin/python scripts/spec_reference.py --print    # print it instead
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "spec.md"

# (type, meaning) per key; the type is checked against the code's default where it has one.
MEANING: dict[str, dict[str, tuple[str, str]]] = {
    "top": {
        "name": ("string", "Study name: the folder `artifacts/studies/<name>/` [default: the file's stem]."),
        "description": ("string", "Free text, printed at the top of the report."),
        "seeds": ("list of int", "Seeds of every attack cell (data order, adapter init, sampling)."),
        "scorers": ("list of string", "`heuristic`, `classifier`, `ensemble`: each generate run is scored by each."),
        "drift": ("bool", "Refusal Drift of every attacked run against its model's baseline."),
        "device": ("string", "`auto`, `cpu`, `cuda` or `cuda:N` for every node."),
        "eval": ("table", "The prompts every model answers: see [eval]."),
        "models": ("array of tables", "The models: see [[models]]."),
        "attacks": ("tables", "`[attacks.NAME]`, one per attack: see [attacks.NAME]."),
        "probe": ("table", "Optional: activations per model (and attacked model): see [probe]."),
        "defenses": ("tables", "Optional: `[defenses.NAME]`: see [defenses.NAME]."),
        "pairs": ("table", "Optional: LoRA training pairs made once by `data pairs`: see [pairs]."),
    },
    "eval": {
        "split": ("string", "`eval` (held out), `direction` or `attack-train`."),
        "prompts": ("path or null", "A prompt file instead of a split (relative to the spec's folder)."),
        "n": ("int", "The first n harmful prompts of the split."),
        "max_new_tokens": ("int", "Response length, tokens (greedy)."),
        "batch_size": ("int", "Prompts per generation batch."),
    },
    "models": {
        "name": ("string", "A registry name (`refusalscope models list`) or a model folder (relative to the spec)."),
        "attacks": ("list of string or null", "Names of the `[attacks.*]` tables applied to this model; `[]` = baseline only [default: all]."),
        "control": ("bool", "A model that never refuses: left out of size fits (the registry marks smollm2-135m)."),
    },
    "attack:common": {
        "kind": ("string", "Attack kind [default: the table's NAME]."),
        "after": ("string", "Name of a LoRA attack table: this prompt attack then attacks the LoRA-attacked model."),
    },
    "attack:lora": {
        "n_data": ("grid of int", "Training pairs per cell."),
        "steps": ("grid of int", "Optimizer steps; cells differing only in steps share one training run."),
        "lr": ("grid of float", "Learning rate (constant, AdamW)."),
        "rank": ("grid of int", "LoRA rank."),
        "alpha": ("grid of float", "LoRA alpha (`attack lora --lora-alpha`)."),
        "batch_size": ("int", "Pairs per step."),
        "max_len": ("int", "Max tokens per example (prompt + response)."),
        "target_kind": ("string", "`auto` (full responses, then AdvBench targets), `full-response` or `advbench-target`."),
        "data": ("path or null", "Your own prompt/response pairs file (relative to the spec) [default: the `attack-train` split's pairs, or [pairs]]."),
        "dropout": ("float", "LoRA dropout."),
        "target_modules": ("list of string", "Module names to adapt, e.g. `[\"gate_proj\", \"up_proj\"]` [default: attention q,k,v,o]; kept in a node's id only when set."),
    },
    "attack:gcg": {
        "steps": ("grid of int", "GCG steps."),
        "search_width": ("int", "Candidate suffixes per step."),
        "topk": ("int", "Top-k tokens per suffix position from the gradient."),
        "suffix_len": ("int", "Suffix length, tokens."),
        "mode": ("string", "`universal` (one suffix over `n` prompts) or `individual`."),
        "n": ("int", "Prompts the suffix is optimised over."),
        "split": ("string", "Split the prompts and targets come from."),
        "max_new_tokens": ("int", "Evaluation response length, tokens."),
    },
    "attack:autodan": {
        "generations": ("grid of int", "Genetic-search generations."),
        "population": ("int", "Texts per generation."),
        "mode": ("string", "`universal` (one prompt over `n` requests) or `individual`."),
        "n": ("int", "Requests the prompt is searched for."),
        "split": ("string", "Split the requests come from."),
        "max_new_tokens": ("int", "Evaluation response length, tokens."),
    },
    "attack:template": {
        "templates": ("string", "Template ids or families, comma list, `default` or `all` (`attack template --list`)."),
        "n_templates": ("int", "Templates sampled per family and seed."),
        "max_template_tokens": ("int", "Leave out longer templates (model tokens; 0 = no cap)."),
        "n": ("int", "Requests per template."),
        "split": ("string", "Split the requests come from."),
        "max_new_tokens": ("int", "Evaluation response length, tokens."),
    },
    "defense:common": {
        "kind": ("string", "`tar` or `steer` [default: the table's NAME]."),
    },
    "defense:tar": {
        "outer_steps": ("int", "Defense (outer) steps."),
        "inner_steps": ("int", "Simulated LoRA-attack steps per outer step."),
        "inner_lr": ("float", "Simulated attack's learning rate."),
        "outer_lr": ("float", "Defense adapter's learning rate."),
        "retain_weight": ("float", "Weight of the retain loss (harmless prompts, the model's own replies)."),
        "rank": ("int", "Defense LoRA rank (merged into the weights at the end)."),
        "inner_rank": ("int", "Simulated attack's LoRA rank."),
        "n_data": ("int", "Attack pairs of the inner loop (= harmful prompts with refusal targets)."),
        "n_retain": ("int", "Harmless `attack-train` prompts for the retain loss."),
        "retain_new_tokens": ("int", "Length of the base model's own replies used as retain targets."),
        "batch_size": ("int", "Examples per step."),
        "max_len": ("int", "Max tokens per example."),
        "target_kind": ("string", "As `attacks.lora.target_kind`."),
        "data": ("path or null", "Your own attack pairs file."),
        "seed": ("int", "Data order, adapter inits, batches."),
        "adv_lrs": ("list of float", "Adversary distribution: each outer step draws the simulated attack's lr from these [empty: `inner_lr`]."),
        "adv_ranks": ("list of int", "... its LoRA rank [empty: `inner_rank`]."),
        "adv_steps": ("list of int", "... its steps [empty: `inner_steps`]."),
        "adv_modules": ("list of string", "... its modules: `attn`, `mlp`, `all` [empty: attn]."),
    },
    "defense:steer": {
        "alphas": ("list of float", "Steering coefficients searched (`defend steer --coef`; x the difference-in-means)."),
        "n": ("int", "Direction-split harmful and harmless prompts each for the search."),
        "skip": ("int", "Skip the first k direction-split prompts [default: sweep_n + sweep_n_val, the prompts the direction was made from; fewer is an error]."),
        "rule": ("string", "`margin` (max RRR - over-refusal) or `target` (smallest coefficient with RRR >= target)."),
        "target": ("float", "RRR to reach with rule = target."),
        "max_new_tokens": ("int", "Response length in the search, tokens."),
        "sweep_n": ("int", "`probe sweep --n` of the sweep that makes the direction."),
        "sweep_n_val": ("int", "`probe sweep --n-val`."),
        "positions": ("string", "`probe sweep --positions`: post-instruction, last or mean."),
        "seed": ("int", "Seed."),
    },
    "pairs": {
        "generator": ("string", "Model that answers `attack-train` prompts (registry name or folder)."),
        "steer": ("string", "`ablate` (the generator's own refusal direction, from a probe-sweep node), `none`, or `ablate:FILE` / `add:FILE:...`."),
        "samples": ("int", "Sampled answers per prompt at most."),
        "n": ("int or null", "Pairs to keep [default: the largest lora `n_data`]."),
        "temperature": ("float", "Sampling temperature."),
        "top_p": ("float", "Nucleus sampling."),
        "max_new_tokens": ("int", "Answer length, tokens."),
        "seed": ("int", "Sampling seed."),
        "scorer": ("string", "Only answers this scorer calls `complied` are kept: `ensemble` or `heuristic`."),
        "sweep_n": ("int", "`probe sweep --n` for the generator's direction (steer = ablate)."),
        "sweep_n_val": ("int", "`probe sweep --n-val`."),
    },
    "probe": {
        "n": ("int", "Harmful and harmless prompts each."),
        "layers": ("string", "`all`, `0-27` or `3,5,7`."),
        "positions": ("string", "`post-instruction`, `last` or `mean`."),
        "sites": ("list of string", "`resid_pre`, `resid_mid`, `resid_post`, `attn_out`, `mlp_out`."),
        "split": ("string", "Prompt split (`direction`)."),
        "attacked": ("bool", "Also probe every LoRA-attacked model."),
    },
}

_PY = {bool: "bool", int: "int", float: "float", str: "string"}
_GAPS: list[str] = []


def _inferred(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        inner = {_PY.get(type(v), "?") for v in value}
        return "list of " + inner.pop() if len(inner) == 1 else "list"
    return _PY.get(type(value), type(value).__name__)


def _compatible(stated: str, default: Any) -> bool:
    """Does the stated type admit the code's default? (int is a float; grids are lists)."""
    got = _inferred(default)
    if got is None:
        return "null" in stated or stated.startswith(("grid", "list", "int or"))
    stated_core = stated.replace("grid of", "list of").split(" or ")[0]
    return got == stated_core or (stated_core.endswith("float") and got.endswith("int")) \
        or (got == "list" and stated_core.startswith("list"))


def _fmt(value: Any) -> str:
    import json

    if value is None:
        return "–"
    if isinstance(value, tuple):
        value = list(value)
    return "`" + json.dumps(value) + "`"


def _rows(section: str, keys: dict[str, Any], extra: tuple[str, ...] = ()) -> list[str]:
    """Markdown table rows: key, type, default, meaning."""
    meanings = MEANING.get(section, {})
    out = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, default in [*keys.items(), *((k, None) for k in extra)]:
        stated, text = meanings.get(key, (None, None))
        if stated is None:
            _GAPS.append(f"{section}.{key}")
            stated, text = _inferred(default) or "?", "(no description yet)"
        elif default is not None and not _compatible(stated, default):
            raise SystemExit(f"spec_reference: {section}.{key} is documented as {stated!r} but "
                             f"its default is {default!r}: fix MEANING")
        out.append(f"| `{key}` | {stated} | {_fmt(default)} | {text} |")
    for key in meanings:
        if key not in keys and key not in extra:
            raise SystemExit(f"spec_reference: MEANING[{section!r}] has {key!r}, which the code "
                             "no longer reads: remove it")
    return out


def render() -> str:
    """The whole page, from the code as it is now."""
    from refusalscope.study import spec as S

    top_defaults = {f.name: (f.default if f.default is not dataclasses.MISSING
                             else f.default_factory() if f.default_factory is not dataclasses.MISSING  # type: ignore[misc]
                             else None)
                    for f in dataclasses.fields(S.Spec)}
    top = {k: (top_defaults.get(k) if k not in ("eval", "probe", "pairs", "models", "attacks",
                                                "defenses") else None)
           for k in S.TOP_KEYS}
    top["name"] = None
    models = {f.name: f.default for f in dataclasses.fields(S.ModelSpec)}
    lines = [
        "# Study spec reference",
        "",
        "<!-- Generated by scripts/spec_reference.py from refusalscope/study/spec.py and the attack",
        "     registry; do not edit by hand (tests/test_docs.py checks it is current). -->",
        "",
        "A study spec is a TOML file (`refusalscope study run FILE.toml`) or the name of a shipped",
        f"spec ({', '.join(f'`{n}`' for n in S.shipped_specs())}: `refusalscope/study/specs/`).",
        "Every key below is optional unless its table is used; a key the code does not know is a",
        "one-line error that names it (`attacks.lora.stepz`) before anything runs. A *grid* key takes",
        "a list (one value is a one-element grid): the study runs every combination, per seed.",
        "Defaults are the code's today; where a study default is cheaper than the command's (GCG,",
        "AutoDAN), the command's `--help` shows its own.",
        "",
        "## Top level", "", *_rows("top", top), "",
        "## [eval]", "", *_rows("eval", dict(S.EVAL_KEYS)), "",
        "## [[models]]", "",
        "A model entry is a table (`[[models]]` with `name = ...`) or just a name in `models = [...]`.",
        "", *_rows("models", {**models, "name": None}), "",
        "## [attacks.NAME]", "",
        "`NAME` is yours (`[attacks.grid]`, `[attacks.steps]`); `kind` picks the attack. Keys every",
        "attack table takes:", "", *_rows("attack:common", {k: None for k in S.ATTACK_COMMON}), "",
    ]
    optional = getattr(S, "ATTACK_OPTIONAL", {})
    for kind in S.ATTACK_KEYS:
        axes, fixed = S.ATTACK_KEYS[kind]
        lines += [f"### kind = \"{kind}\"", "",
                  *_rows(f"attack:{kind}", {**axes, **fixed}, tuple(optional.get(kind, ()))), ""]
    lines += ["## [defenses.NAME]", "",
              "`[defenses.tar]` runs every model's subgraph again on its TAR-defended model;",
              "`[defenses.steer]` adds `probe sweep` -> `defend steer` -> `generate --steer` -> `score`",
              "after every LoRA cell (it needs a LoRA attack in the spec).", "",
              *_rows("defense:common", {"kind": None}), ""]
    for kind, keys in S.DEFENSE_KEYS.items():
        lines += [f"### kind = \"{kind}\"", "", *_rows(f"defense:{kind}", dict(keys)), ""]
    lines += ["## [pairs]", "",
              "LoRA training pairs made once by `refusalscope data pairs` and fed to every LoRA",
              "cell without its own `data` (needs a LoRA attack in the spec).", "",
              *_rows("pairs", dict(S.PAIRS_KEYS)), "",
              "## [probe]", "", *_rows("probe", dict(S.PROBE_KEYS)), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--print", action="store_true", help="print instead of writing docs/spec.md")
    args = ap.parse_args()
    text = render()
    if _GAPS:
        print("spec_reference: no description for " + ", ".join(_GAPS), file=sys.stderr)
    if args.print:
        sys.stdout.write(text)
    else:
        OUT.write_text(text, encoding="utf-8")
        print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
