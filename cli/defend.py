"""`refusalscope defend tar|steer`: defenses, each defined in its own module."""

from __future__ import annotations

import typer

defend_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Defend a model: tamper-resistant fine-tuning (tar) before attacks, refusal-direction "
         "steering (steer) after them. Evaluate with the same attacks, `generate` and `score`."
         "\n\n\b\nExample:\n"
         "  refusalscope defend tar -m qwen2.5-coder-0.5b",
)


def register(app: typer.Typer) -> None:
    """Add the `defend` group (commands come from defend_* modules) to the root app."""
    from refusalscope.cli import defend_steer, defend_tar

    defend_tar.register(defend_app)
    defend_steer.register(defend_app)
    app.add_typer(defend_app, name="defend")
