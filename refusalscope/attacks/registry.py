"""Every attack by name: the CLI, the study, the cost planner and `rs.attack` read this.

Adding an attack is one module (a frozen config class and an object with the `Attack`
protocol's attributes and methods) and one line here, `register(mymodule.ATTACK)`, or the
same line in your own code for an attack that lives outside the package.

Example:
    >>> sorted(REGISTRY)
    ['autodan', 'gcg', 'lora', 'template']
    >>> get("gcg").kind
    'prompt'
"""

from __future__ import annotations

from refusalscope.attacks import autodan_run, gcg_run, lora_attack, template_run
from refusalscope.attacks.base import KINDS, Attack, AttackResult, config_defaults, study_keys
from refusalscope.registries import add, lookup

__all__ = ["REGISTRY", "Attack", "AttackResult", "config_defaults", "get", "register",
           "study_keys"]
REGISTRY: dict[str, Attack] = {}


def register(attack: Attack) -> None:
    """Make `attack` known by its `name` (a later registration of a name replaces it)."""
    add(REGISTRY, attack, "attack", KINDS)


def get(name: str) -> Attack:
    """The attack called `name`; an unknown name is a `UserError` listing the known ones."""
    return lookup(REGISTRY, name, "attack")


register(lora_attack.ATTACK)
register(gcg_run.ATTACK)
register(autodan_run.ATTACK)
register(template_run.ATTACK)
