"""`refusalscope` command line. Sub-apps are registered here; each lives in its own module.

Only typer is imported at start-up; every command imports torch & co. inside its body.
"""

from __future__ import annotations

import typer

from refusalscope import __version__
from refusalscope.cli._common import VocabGroup, setup_logging

app = typer.Typer(
    name="refusalscope",
    cls=VocabGroup,
    help="Measure refusal robustness of chat models: pull models and data, generate, score. "
         "Runs are written under $REFUSALSCOPE_ARTIFACTS/runs (default ./artifacts/runs) unless "
         "a command's --out says otherwise; the option vocabulary is in docs/cli.md.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"refusalscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress to stderr."),
) -> None:
    setup_logging(verbose)


def _register() -> None:
    from refusalscope.cli import attack, data, generate, models, score, serve

    app.add_typer(models.app, name="models")
    app.add_typer(data.app, name="data")
    generate.register(app)
    score.register(app)
    attack.register(app)
    serve.register(app)
    from refusalscope.cli import steer

    steer.register(app)
    from refusalscope.cli import probe

    probe.register(app)
    from refusalscope.cli import study

    study.register(app)
    from refusalscope.cli import fit

    fit.register(app)
    from refusalscope.cli import defend

    defend.register(app)
    from refusalscope.cli import label, view

    view.register(app)
    label.register(app)


_register()


def main() -> None:
    app()
