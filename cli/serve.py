"""`refusalscope serve --model M`: an OpenAI-compatible HTTP endpoint over a local model."""

from __future__ import annotations

import typer

from refusalscope.cli._common import serve_until_interrupted, user_errors


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


@user_errors
def serve(
    model: str = typer.Option(..., "--model", "-m",
                              help="Registry name, local folder, .gguf file or hub id."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; loopback by default "
                             "(the server has no authentication)."),
    port: int = typer.Option(8000, help="Port (0 picks a free one)."),
    adapter: str | None = typer.Option(None, help="peft adapter folder, or a run folder "
                                       "holding one."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    dtype: str = typer.Option("auto", help="auto | float32 | bfloat16 | float16"),
) -> None:
    """Serve GET /v1/models and POST /v1/chat/completions (greedy unless a temperature is
    given; no streaming) until interrupted. Usable as a judge: openai:http://HOST:PORT/v1#NAME.
    Writes nothing; logs requests to stderr.

    \b
    Example:
      refusalscope serve -m smollm2-135m --port 8000
    """
    from refusalscope.errors import UserError
    from refusalscope.models.handle import ModelHandle, RuntimeOptions
    from refusalscope.serve import make_server

    if not 0 <= port <= 65535:
        raise UserError(f"--port must be in 0..65535 (got {port})")
    handle = ModelHandle.load(model, adapter=adapter,
                              options=RuntimeOptions(device=device, dtype=dtype))
    try:
        server = make_server(handle, host, port)
    except OSError as e:
        raise UserError(f"cannot bind {host}:{port}: {e.strerror or e}") from None
    h, p = server.server_address[:2]
    typer.echo(f"serving {handle.name} at http://{h}:{p}/v1 (judge spec: "
               f"openai:http://{h}:{p}/v1#{handle.name}); Ctrl-C to stop", err=True)
    serve_until_interrupted(server)
