"""Every defense by name: the CLI, the study, the cost planner and `rs.defend` read this.

Adding a defense is one module (a frozen config class and an object with the `Defense`
protocol's attributes and methods, `base.Defense`) and one line here, `register(mymodule.X)`,
or the same line in your own code for a defense that lives outside the package. A study node
of defense NAME is of kind `defend-NAME` (`node_defense` maps it back).

Example:
    >>> sorted(REGISTRY)
    ['steer', 'tar']
    >>> get("steer").kind
    'runtime'
"""

from __future__ import annotations

from refusalscope.defenses import steer, tar_run
from refusalscope.defenses.base import KINDS, Defense, DefenseResult, study_keys
from refusalscope.registries import add, lookup

__all__ = ["REGISTRY", "Defense", "DefenseResult", "get", "node_defense", "register",
           "study_keys"]
REGISTRY: dict[str, Defense] = {}
NODE_PREFIX = "defend-"


def register(defense: Defense) -> None:
    """Make `defense` known by its `name` (a later registration of a name replaces it)."""
    add(REGISTRY, defense, "defense", KINDS)


def get(name: str) -> Defense:
    """The defense called `name`; an unknown name is a `UserError` listing the known ones."""
    return lookup(REGISTRY, name, "defense")


def node_defense(kind: str) -> Defense | None:
    """The registered defense of a study node kind `defend-<name>` (None: not a defense)."""
    if not kind.startswith(NODE_PREFIX):
        return None
    return REGISTRY.get(kind.removeprefix(NODE_PREFIX))


register(tar_run.TAR)
register(steer.STEER)
