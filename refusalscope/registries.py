"""What the attack and defense registries share: registering a plug-in by its name and kind,
and looking a name up with a one-line error that lists the known names.

Example:
    >>> reg = {}
    >>> class Toy: name, kind = "toy", "prompt"
    >>> add(reg, Toy(), "attack", ("prompt",)); sorted(reg)
    ['toy']
"""

from __future__ import annotations

from typing import Any

from refusalscope.errors import UserError


def add(registry: dict[str, Any], item: Any, what: str, kinds: tuple[str, ...]) -> None:
    """Make `item` known by its `name` (a later registration of a name replaces it); its `kind`
    must be one of `kinds` (`what` names the plug-in sort in the error)."""
    if item.kind not in kinds:
        raise ValueError(f"{what} {item.name!r}: kind must be one of {kinds}, not {item.kind!r}")
    registry[item.name] = item


def config_of(item: Any, what: str, options: dict[str, Any]) -> Any:
    """`item.config_cls(**options)`; an option the config lacks is a `UserError` naming the
    plug-in's options (`what` names the plug-in sort)."""
    names = item.config_cls.__dataclass_fields__
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise UserError(f"{what} {item.name} has no option {', '.join(unknown)}: its options are "
                        f"{', '.join(sorted(names))}")
    return item.config_cls(**options)


def lookup(registry: dict[str, Any], name: str, what: str) -> Any:
    """The item called `name`; an unknown name is a `UserError` listing the known ones."""
    try:
        return registry[name]
    except KeyError:
        raise UserError(f"unknown {what} {name!r}: one of {', '.join(sorted(registry))}") from None
