"""`drivewm models` and `drivewm config show MODEL`: what the registry holds and what each config field means."""

from __future__ import annotations

import typer


def models() -> None:
    """List the registered models: name, kind and config class."""
    from rich.console import Console
    from rich.table import Table

    from drivewm.registry import registered_models

    table = Table(title="Registered models")
    for c in ("name", "kind", "config"):
        table.add_column(c)
    for name, entry in sorted(registered_models().items(), key=lambda kv: (kv[1].kind, kv[0])):
        table.add_row(name, entry.kind, f"{entry.config_cls.__module__}.{entry.config_cls.__qualname__}")
    Console(width=200).print(table)


def config_show(model: str = typer.Argument(..., help="A registered model name (see `drivewm models`).")) -> None:
    """Print every config field of MODEL with its default and docstring (nested configs as dotted keys)."""
    from drivewm.config import ConfigError, config_fields
    from drivewm.registry import config_class

    try:
        cls = config_class(model)
    except KeyError as e:
        raise ConfigError(str(e.args[0])) from None
    typer.echo(f"model.name={model}: {cls.__module__}.{cls.__qualname__}")
    for f in config_fields(cls):
        typer.echo(f"model.{f.name}: {f.type}" if f.nested else f"model.{f.name}: {f.type} = {f.default!r}")
        if f.doc:
            for line in f.doc.splitlines():
                typer.echo(f"    {line}")
