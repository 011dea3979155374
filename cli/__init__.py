"""The Typer front-end, installed as `refusalscope.cli`. Thin: parse options, call the core, print."""
