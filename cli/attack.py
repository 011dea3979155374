"""`refusalscope attack lora|gcg|autodan|template`: attacks, each defined in its own module."""

from __future__ import annotations

import typer

attack_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Attack a model: LoRA fine-tuning sweeps and prompt attacks. Attacked models and "
         "prompts are evaluated with `generate` and `score`. Runs go under "
         "$REFUSALSCOPE_ARTIFACTS/runs.\n\n\b\nExample:\n"
         "  refusalscope attack lora -m qwen2.5-coder-0.5b --n-data 64 --steps 1,4,16",
)
def register(app: typer.Typer) -> None:
    """Add the `attack` group (commands come from attack_* modules) to the root app."""
    from refusalscope.cli import attack_autodan, attack_gcg, attack_lora, attack_template

    attack_lora.register(attack_app)
    attack_gcg.register(attack_app)
    attack_autodan.register(attack_app)
    attack_template.register(attack_app)
    app.add_typer(attack_app, name="attack")
