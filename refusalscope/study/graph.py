"""Expand a `Spec` into a graph of nodes, each one run of an existing command.

    baseline generate -> score (per scorer)
    attack-lora (one trajectory per n_data x lr x rank x alpha x seed; every `steps` value is a
      cell saved on the way) -> generate --adapter CELL --baseline BASE -> score (+ drift)
    attack-gcg / attack-autodan / attack-template (per grid combo x seed) -> generate over
      the attacked eval prompts -> score;  `after = "lora"`: the prompt attack targets the
      LoRA-attacked model
    attack-<name> of any other weights attack (per grid combo x seed) -> generate from the
      model its `apply` makes (--baseline BASE) -> score (+ drift)
    probe per model and per attacked model (when the spec has [probe])
    defenses (`defenses.registry`): a weights defense ([defenses.tar]) -> defend-tar per
      model, then the model's whole subgraph again with the defended model (every node reads
      it from its `defended` input); a runtime defense ([defenses.steer]) -> per LoRA cell
      defend-steer (alpha chosen on the direction split, from a probe-sweep per model) ->
      generate with it on (`Defense.generation`) -> score
    [pairs] -> (probe-sweep of the generator when steer = "ablate") -> one pairs node
      (`data pairs`) -> every attack-lora node without its own `data`

A node id is content-addressed: kind + sha256 of (kind, params, input node ids), so the same
config on the same inputs is the same node in every run of every spec, and changing anything
upstream changes every id downstream.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from refusalscope.errors import UserError
from refusalscope.study.spec import AttackSpec, ModelSpec, Spec



class _Resources(dict[str, dict[str, float]]):
    """`attack-<name>` kinds ask the attack registry (`Attack.resources`), `defend-<name>`
    kinds the defense registry (`Defense.resources`), the rest are below."""

    def __missing__(self, kind: str) -> dict[str, float]:
        from refusalscope.attacks.registry import REGISTRY
        from refusalscope.defenses.registry import node_defense

        a = REGISTRY.get(kind.removeprefix("attack-")) if kind.startswith("attack-") else None
        a = a or node_defense(kind)
        if a is None:
            raise KeyError(kind)
        return a.resources(None)

    def get(self, kind: str, default: Any = None) -> Any:  # type: ignore[override]
        try:
            return self[kind]
        except KeyError:
            return default


# How many CPUs / GPUs a node of each kind asks a scheduler for (Ray). Scoring is light.
RESOURCES: dict[str, dict[str, float]] = _Resources({
    "generate": {"cpus": 2, "gpus": 1}, "score": {"cpus": 1, "gpus": 0},
    "probe": {"cpus": 2, "gpus": 1}, "probe-sweep": {"cpus": 2, "gpus": 1},
    "pairs": {"cpus": 2, "gpus": 1},
})


@dataclass(frozen=True)
class Node:
    """One run in the study: `kind` (a key of `executor.NODE_KINDS`), its config, its inputs."""

    id: str
    kind: str
    params: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)  # role -> node id
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "params": self.params,
                "inputs": self.inputs, "label": self.label}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Node:
        return cls(d["id"], d["kind"], d["params"], dict(d.get("inputs", {})), d.get("label", ""))


def node_id(kind: str, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """Content id: the same kind, params and input ids always give the same id."""
    blob = json.dumps({"kind": kind, "params": params, "inputs": inputs}, sort_keys=True,
                      default=str).encode()
    return f"{kind}-{hashlib.sha256(blob).hexdigest()[:12]}"


def make_node(kind: str, params: dict[str, Any], inputs: dict[str, str] | None = None,
              label: str = "") -> Node:
    inputs = dict(sorted((inputs or {}).items()))
    params = json.loads(json.dumps(params, sort_keys=True))  # plain JSON: tuples -> lists
    return Node(node_id(kind, params, inputs), kind, params, inputs, label)


class _Builder:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.nodes: dict[str, Node] = {}
        self.defended: dict[str, str] = {}  # {"defended": tar node id} inside a TAR variant

    def add(self, node: Node) -> Node:
        self.nodes.setdefault(node.id, node)
        return node

    def node(self, kind: str, params: dict[str, Any], inputs: dict[str, str],
             label: str) -> Node:
        """A model-reading node of the current variant (the defended model's, in a TAR one)."""
        return self.add(make_node(kind, params, {**self.defended, **inputs}, label))

    def eval_params(self, model: str) -> dict[str, Any]:
        ev = self.spec.eval
        return {"model": model, "split": ev["split"], "prompts": ev["prompts"], "n": ev["n"],
                "max_new_tokens": ev["max_new_tokens"], "batch_size": ev["batch_size"],
                "device": self.spec.device}

    def scored(self, gen: Node, label: str) -> None:
        from refusalscope.scoring.factory import stamp

        for scorer in self.spec.scorers:
            self.add(make_node("score", {"scorer": scorer, **stamp(scorer)},
                               {"generate": gen.id}, f"{label} | score {scorer}"))

    def probe(self, model: str, label: str, inputs: dict[str, str] | None = None,
              steps: int | None = None) -> None:
        p = self.spec.probe
        if p is None or (inputs and not p["attacked"]) or self.defended:
            return
        params = {"model": model, "n": p["n"], "layers": p["layers"], "split": p["split"],
                  "positions": p["positions"], "sites": list(p["sites"]),
                  "device": self.spec.device, "adapter_steps": steps}
        self.add(make_node("probe", params, inputs, f"{label} | probe"))

    def model(self, m: ModelSpec) -> None:
        """The model's subgraph, then again on each weights defense's defended model."""
        from refusalscope.defenses.base import WEIGHTS
        from refusalscope.defenses.registry import get

        short = m.name.rsplit("/", 1)[-1]
        self.variant(m, short)
        for d in self.spec.defenses:
            if get(d.kind).kind == WEIGHTS:
                made = self.add(make_node(f"defend-{d.kind}", {"model": m.name, **d.params,
                                                               "device": self.spec.device}, {},
                                          f"{short} defend {d.name}"))
                self.defended = {"defended": made.id}
                self.variant(m, f"{short}+{d.name}")
                self.defended = {}

    def variant(self, m: ModelSpec, short: str) -> None:
        base = self.node("generate", self.eval_params(m.name), {}, f"{short} baseline")
        self.scored(base, f"{short} baseline")
        self.probe(m.name, f"{short} baseline")
        chosen = [a for a in self.spec.attacks if m.attacks is None or a.name in m.attacks]
        for a in chosen:
            if a.after is None:
                self.attack(m.name, short, a, base, chosen, adapter=None)

    def attack(self, model: str, short: str, a: AttackSpec, base: Node,
               chosen: list[AttackSpec], adapter: tuple[str, int] | None) -> None:
        from refusalscope.attacks.base import WEIGHTS
        from refusalscope.attacks.registry import get

        keys = list(a.grid)
        combos = [dict(zip(keys, c, strict=True)) for c in itertools.product(*a.grid.values())]
        # a weights attack's replies answer the baseline's prompts: Refusal Drift applies
        drift = {"baseline": base.id} if self.spec.drift and get(a.kind).kind == WEIGHTS else {}
        for seed in self.spec.seeds:
            if a.kind == "lora":
                self.lora(model, short, a, base, chosen, combos, seed)
                continue
            for combo in combos:
                params = {"model": model, "seed": seed, **combo, **a.fixed,
                          "adapter_steps": adapter[1] if adapter else None,
                          "device": self.spec.device}
                inputs = {"adapter": adapter[0]} if adapter else {}
                tag = f"{short} {a.name} " + " ".join(f"{k}={v}" for k, v in combo.items())
                atk = self.node(f"attack-{a.kind}", params, inputs, f"{tag} seed={seed}")
                gen_params = {**self.eval_params(model), "attack": a.kind,
                              "adapter_steps": params["adapter_steps"]}
                gen = self.node("generate", gen_params, {"attack": atk.id, **inputs, **drift},
                                f"{tag} seed={seed}")
                self.scored(gen, f"{tag} seed={seed}")

    def lora(self, model: str, short: str, a: AttackSpec, base: Node,
             chosen: list[AttackSpec], combos: list[dict[str, Any]], seed: int) -> None:
        trajectories: dict[str, dict[str, Any]] = {}
        for c in combos:
            rest = {k: v for k, v in c.items() if k != "steps"}
            trajectories.setdefault(json.dumps(rest, sort_keys=True), rest)
        steps = sorted(set(a.grid["steps"]))
        for rest in trajectories.values():
            params = {"model": model, "seed": seed, **rest, "steps": steps, **a.fixed,
                      "device": self.spec.device}
            tag = f"{short} {a.name} " + " ".join(f"{k}={v}" for k, v in rest.items())
            made = self.pairs() if a.fixed["data"] is None else None
            atk = self.node("attack-lora", params, {"pairs": made} if made else {},
                            f"{tag} seed={seed}")
            for s in steps:
                inputs = {"adapter": atk.id, **({"baseline": base.id} if self.spec.drift else {})}
                gen = self.node("generate", {**self.eval_params(model), "adapter_steps": s},
                                inputs, f"{tag} steps={s} seed={seed}")
                self.scored(gen, f"{tag} steps={s} seed={seed}")
                self.probe(model, f"{tag} steps={s} seed={seed}", {"adapter": atk.id}, s)
                self.runtime_defenses(model, f"{tag} steps={s} seed={seed}", atk, s, inputs)
            for b in chosen:
                if b.after == a.name:
                    self.attack(model, f"{short} {a.name}[{max(steps)}]", b, base, chosen,
                                adapter=(atk.id, max(steps)))


    def sweep(self, model: str, n: int, n_val: int, positions: str) -> Node:
        """The probe-sweep node of `model` (one per model and settings, shared by all)."""
        return self.add(make_node("probe-sweep", {
            "model": model, "n": n, "n_val": n_val, "positions": positions,
            "device": self.spec.device}, {}, f"{model.rsplit('/', 1)[-1]} directions"))

    def pairs(self) -> str | None:
        """Id of the `[pairs]` node (None without a `[pairs]` table): one per generator and
        settings, whatever model or cell reads it; its direction from a sweep node."""
        p = self.spec.pairs
        if p is None:
            return None
        inputs = {}
        if p["steer"] == "ablate":
            inputs["directions"] = self.sweep(p["generator"], p["sweep_n"], p["sweep_n_val"],
                                              "post-instruction").id
        params = {"model": p["generator"], "device": self.spec.device,
                  **{k: v for k, v in p.items() if k != "generator" and not k.startswith("sweep_")}}
        return self.add(make_node("pairs", params, inputs,
                                  f"pairs from {p['generator'].rsplit('/', 1)[-1]}")).id

    def runtime_defenses(self, model: str, tag: str, atk: Node, steps: int,
                         inputs: dict[str, str]) -> None:
        """After one LoRA cell, each runtime defense: its node (e.g. steer's alpha search on
        the direction split, reading a probe-sweep's direction), then the eval generate with
        it on (input role: the defense's kind)."""
        from refusalscope.defenses.base import RUNTIME
        from refusalscope.defenses.registry import get

        if self.defended:  # a direction is the undefended base model's
            return
        for d in self.spec.defenses:
            defense = get(d.kind)
            if defense.kind != RUNTIME:
                continue
            made = self.defense_inputs(model, d.params, defense.study_inputs)
            own = {k: v for k, v in d.params.items()
                   if not any(k in keys for keys in defense.study_inputs.values())}
            ds = self.add(make_node(f"defend-{d.kind}", {
                "model": model, "adapter_steps": steps, **own, "device": self.spec.device},
                {"adapter": atk.id, **made}, f"{tag} defend {d.name}"))
            gen = self.add(make_node("generate", {**self.eval_params(model),
                                                  "adapter_steps": steps, "defense": d.name},
                                     {**inputs, d.kind: ds.id}, f"{tag} +{d.name}"))
            self.scored(gen, f"{tag} +{d.name}")

    def defense_inputs(self, model: str, params: dict[str, Any],
                       wanted: dict[str, tuple[str, ...]]) -> dict[str, str]:
        """Input role -> node id for what a defense reads; `directions`: the model's sweep."""
        out = {}
        for role, keys in wanted.items():
            if role != "directions":
                raise UserError(f"a defense reads {role!r}: a study makes only 'directions'")
            out[role] = self.sweep(model, *(params[k] for k in keys)).id
        return out


def expand(spec: Spec) -> list[Node]:
    """Every node of the study, in dependency order (inputs before the nodes that read them)."""
    b = _Builder(spec)
    for m in spec.models:
        b.model(m)
    return topological(b.nodes.values())


def topological(nodes: Iterable[Node]) -> list[Node]:
    """Order nodes so that inputs come first (stable: ties keep the given order).

    A node whose input is not in the graph, or a cycle, is a one-line `UserError`.
    """
    nodes = list(nodes)
    by_id = {n.id: n for n in nodes}
    for n in nodes:
        for role, dep in n.inputs.items():
            if dep not in by_id:
                raise UserError(f"node {n.id} ({n.label}) reads {role} from {dep}, which is not "
                                "in the study graph (missing input)")
    order: list[Node] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = placed

    def visit(n: Node, path: list[str]) -> None:
        if state.get(n.id) == 2:
            return
        if state.get(n.id) == 1:
            raise UserError(f"cycle in the study graph: {' -> '.join([*path, n.id])}")
        state[n.id] = 1
        for dep in n.inputs.values():
            visit(by_id[dep], [*path, n.id])
        state[n.id] = 2
        order.append(n)

    for n in nodes:
        visit(n, [])
    return order
