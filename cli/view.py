"""`refusalscope view STUDY|RUN...`: a static site to browse a study's report and responses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from refusalscope.cli._common import console, serve_until_interrupted, user_errors


def register(app: typer.Typer) -> None:
    app.command("view")(view)


@user_errors
def view(
    targets: Annotated[list[Path], typer.Argument(
        metavar="STUDY|RUN...", show_default=False,
        help="A study folder, generate run folders, or a folder of runs.")],
    out: Path | None = typer.Option(
        None, help="Site folder [default: <study>/site, else "
                   "$REFUSALSCOPE_ARTIFACTS/view/<first run>]."),
    overwrite: bool = typer.Option(False, help="Rewrite an existing site folder."),
    serve: bool = typer.Option(False, "--serve", help="Serve the site until interrupted."),
    host: str = typer.Option("127.0.0.1", help="--serve: address to bind (loopback by "
                                               "default; the server has no authentication)."),
    port: int = typer.Option(8780, help="--serve: port (0 picks a free one)."),
    max_rows: int | None = typer.Option(None, help="Embed at most this many rows."),
) -> None:
    """Write a self-contained HTML site (no server or network needed): the study report's
    Findings, tables and figures, a heatmap and cell table linking to their rows, and a paged
    response browser (filters; baseline beside attacked; completions that were not refused
    collapsed behind a content warning). Open index.html, or pass --serve.

    \b
    Example:
      refusalscope view artifacts/studies/quickstart --serve
    """
    from refusalscope.errors import UserError
    from refusalscope.paths import artifacts_dir
    from refusalscope.view.site import build_site

    if not 0 <= port <= 65535:
        raise UserError(f"--port must be in 0..65535 (got {port})")
    if out is None:
        first = targets[0]
        out = (first / "site" if (first / "nodes").is_dir()
               else artifacts_dir() / "view" / first.resolve().name)
        overwrite = True  # the default folder is ours to refresh
    index, data = build_site(targets, out, overwrite=overwrite, max_rows=max_rows)
    console().print(f"wrote {index}: {len(data.rows)} responses from {len(data.runs)} runs, "
                    f"scorers {', '.join(data.scorers) or 'none'}"
                    + (f", report {data.report}" if data.report else ""))
    if serve:
        _serve(index.parent, host, port)


def _serve(folder: Path, host: str, port: int) -> None:
    from refusalscope.view.serve import static_server

    server = static_server(folder, host, port)
    h, p = server.server_address[:2]
    console().print(f"serving http://{h}:{p}/ (Ctrl-C stops)", highlight=False)
    serve_until_interrupted(server)
