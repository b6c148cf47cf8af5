"""DVC stage commands: thin Typer commands that read params.yaml, call `itnas`, and write the stage outputs."""
