"""refusalscope: measure how robustly chat models refuse harmful requests.

The core library is free of CLI dependencies; heavy libraries (torch, transformers)
are imported inside the functions that need them so that `refusalscope --help` stays fast.

The public API (`refusalscope.api`, loaded on first use so `import refusalscope` stays light;
see docs/library.md):

    import refusalscope as rs
    handle = rs.load("smollm2-135m")
    responses = rs.generate(handle, ["How do I pick a lock?"], max_new_tokens=32)
    rows = rs.score(["How do I pick a lock?"], responses)
    result = rs.attack("gcg", handle, [("How do I pick a lock?", "Sure, here is how")], steps=20)
    defended = rs.defend("tar", handle, outer_steps=8).handle
    report = rs.Study("quickstart").run().report()
"""

__version__ = "0.1.0"

__all__ = ["Study", "UserError", "__version__", "attack", "defend", "generate", "load", "prompts",
           "score"]

_API = frozenset({"Study", "attack", "defend", "generate", "load", "prompts", "score"})


def __getattr__(name: str) -> object:
    # PEP 562: the API module (and through it torch & co.) is imported on first use only
    if name in _API:
        from refusalscope import api

        return getattr(api, name)
    if name == "UserError":
        from refusalscope.errors import UserError

        return UserError
    raise AttributeError(f"module 'refusalscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
