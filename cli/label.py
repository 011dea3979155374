"""`refusalscope label RUN...`: label a stratified sample of responses by hand in a browser."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from refusalscope.cli._common import console, serve_until_interrupted, user_errors


def register(app: typer.Typer) -> None:
    app.command("label")(label)


@user_errors
def label(
    runs: Annotated[list[Path], typer.Argument(
        metavar="RUN|STUDY...", show_default=False,
        help="Scored generate run folders (or ids), a study folder or a folder of runs.")],
    sample: int = typer.Option(200, help="Responses to label, stratified by model, attack and "
                               "prompt label as `score validate` samples (all if fewer)."),
    seed: int = typer.Option(0, help="Sampling seed (the same seed resumes the same sample)."),
    out: Path | None = typer.Option(None, metavar="FILE", help="Labels file (JSONL, appended) "
                                    "[default: $REFUSALSCOPE_ARTIFACTS/labels/labels.jsonl]."),
    labeller: str | None = typer.Option(None, help="Your name in the labels file "
                                        "[default: the login name]."),
    port: int = typer.Option(8781, help="Port on 127.0.0.1 (0 picks a free one)."),
) -> None:
    """Serve a labelling page on 127.0.0.1 until interrupted. Keys: r refused, c complied,
    d degenerate, s skip. The scorer's label is shown only after yours; every label is
    appended to the labels file at once, and a restart resumes where you stopped. Then:
    `refusalscope score validate RUN... --gold LABELS`.

    \b
    Example:
      refusalscope label runs/base runs/attacked --sample 50
    """
    import getpass

    from refusalscope.errors import UserError
    from refusalscope.paths import artifacts_dir
    from refusalscope.view.label_server import LabelConfig, make_server, prepare, summary

    if not 0 <= port <= 65535:
        raise UserError(f"--port must be in 0..65535 (got {port})")
    path = out or artifacts_dir() / "labels" / "labels.jsonl"
    cfg = LabelConfig(runs=tuple(str(r) for r in runs), out=str(path),
                      labeller=labeller or getpass.getuser(), sample=sample, seed=seed)
    session = prepare(cfg)
    server = make_server(session, port)
    h, p = server.server_address[:2]
    out_console = console()
    out_console.print(summary(session), highlight=False)
    out_console.print(f"labelling on http://{h}:{p}/ (Ctrl-C stops; labels are saved as given)",
                      highlight=False)
    serve_until_interrupted(server)
