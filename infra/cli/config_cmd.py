"""`infra config`: validate the spec, print its JSON Schema."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="Check the stack spec and print its schema.", no_args_is_help=True)


@app.command("validate")
def validate(json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False) -> None:
    """Validate infra.yaml and images/*/image.yaml; one line per problem, exit 2 if any."""
    from infra.cli.context import load
    from infra.cli.output import print_json

    stack = load()
    summary = {
        "spec": str(stack.spec_path),
        "embedded": stack.embedded,
        "project": stack.spec.project,
        "images": sorted(stack.images),
        "stages": list(stack.spec.stages),
        "modes": {mode: stack.images_for_mode(mode) for mode in stack.spec.modes},
    }
    if json_out:
        print_json(summary)
        return
    source = "built-in default spec" if stack.embedded else str(stack.spec_path)
    typer.echo(f"{source}: valid ({len(stack.images)} images, {len(stack.spec.stages)} stages)")
    for mode, images in summary["modes"].items():
        typer.echo(f"  {mode}: {', '.join(images)}")


@app.command("schema")
def schema(
    which: Annotated[str, typer.Argument(help="'project' (infra.yaml) or 'image' (images/<name>/image.yaml).")] = "project",
) -> None:
    """Print the JSON Schema of infra.yaml or image.yaml, for editors."""
    from infra.cli.output import print_json
    from infra.spec.models import ImageSpec, ProjectSpec
    from infra.errors import BadInputError

    models = {"project": ProjectSpec, "image": ImageSpec}
    if which not in models:
        raise BadInputError(f"unknown schema '{which}' (known: {', '.join(models)})")
    print_json(models[which].model_json_schema())
