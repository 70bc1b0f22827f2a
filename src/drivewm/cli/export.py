"""`drivewm export extractor RUN OUT_FILE`: a trained encoder's frozen features as a file the Frechet metrics load."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Export trained models to files that load without drivewm's model code.", no_args_is_help=True,
                  rich_markup_mode=None)


@app.command("extractor")
def export_extractor(
    run_dir: Path = typer.Argument(..., help="A trained run of a video encoder (e.g. jepa/video_encoder_tiny.yaml)."),
    out_file: Path = typer.Argument(..., help="File to write: .pt2 (torch.export) or .pt (TorchScript)."),
    which: str = typer.Option("best", "--which", help="Checkpoint of the run: 'best' or 'latest'."),
    samples: int = typer.Option(2048, "--samples", help="Clips per side in the printed protocol name."),
) -> None:
    """Write the run's frozen extractor (clips [N, T, 3, H, W] in the protocol's value range -> features [N, D]);
    `drivewm.metrics.video.load_protocol_extractor` loads it like the I3D file, under metric `fd`."""
    import torch

    from drivewm.errors import DrivewmError
    from drivewm.metrics.video import export_extractor as write_extractor
    from drivewm.train.checkpoint import load_run

    cfg, model = load_run(run_dir, which)
    if not hasattr(model, "extractor"):
        raise DrivewmError(f"{run_dir}: model {cfg.model.name!r} has no frozen feature extractor to export")
    protocol = cfg.model.protocol(samples)
    example = torch.zeros(2, protocol.frames, 3, *protocol.size).uniform_(*protocol.value_range)
    loaded = write_extractor(model.extractor(), example, out_file)
    dim = loaded(example).shape[1]
    typer.echo(f"wrote {out_file}: {dim} features per clip under {protocol.name} "
               f"(input [N, {protocol.frames}, 3, {protocol.size[0]}, {protocol.size[1]}] in {list(protocol.value_range)})")
