"""`infra image inspect REF`: the provenance and the SBOM a pushed image carries, read from its registry."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="Images in a registry: their provenance and SBOM.", no_args_is_help=True)


@app.command("inspect")
def inspect(
    ref: Annotated[str, typer.Argument(help="HOST[:PORT]/NAME[:TAG|@DIGEST] in a registry.")],
    sbom: Annotated[bool, typer.Option("--sbom", help="Print the SBOM itself (CycloneDX JSON).")] = False,
    provenance: Annotated[bool, typer.Option("--provenance", help="Print the provenance attestation itself (in-toto JSON).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """The image's digest, what built it (provenance) and what it holds (SBOM); exit 1 when either is missing."""
    from infra.cli.output import print_json
    from infra.oci.attest import read_attestations

    found = read_attestations(ref)
    if sbom or provenance:
        found.require(provenance=provenance, sbom=sbom)
        documents = {}
        if provenance:
            documents["provenance"] = found.provenance[0] if len(found.provenance) == 1 else found.provenance
        if sbom:
            documents["sbom"] = found.sbom
        print_json(documents if len(documents) > 1 else next(iter(documents.values())))
        return
    summary = found.summary()
    if json_out:
        print_json(summary)
    else:
        for line in summary_lines(summary):
            typer.echo(line)
    found.require()


def summary_lines(summary: dict) -> list[str]:
    """The summary as aligned lines: image, provenance per platform, SBOM."""
    lines = [f"image       {summary['ref']}", f"digest      {summary['digest']}  ({summary['media_type']})"]
    for image in summary["images"]:
        lines.append(f"platform    {image['platform'] or '-'}  {image['digest']}")
        p = image["provenance"]
        if p is None:
            lines.append("provenance  none")
            continue
        took = f" ({p['seconds']} s)" if p["seconds"] is not None else ""
        source = " ".join(x for x in (p["source"]["uri"], p["source"]["digest"]) if x)
        lines += [
            f"provenance  {p['predicate_type']}",
            f"  builder     {p['builder'] or '-'}  ({p['build_type']})",
            f"  built       {p['started'] or '?'} .. {p['finished'] or '?'}{took}",
            f"  frontend    {p['frontend'] or '-'}  {p['entry_point']}".rstrip(),
            f"  source      {source or 'local: ' + (', '.join(p['contexts']) or '-')}",
            f"  build args  {', '.join(f'{k}={v}' for k, v in p['build_args'].items()) or '-'}",
            f"  secrets     {', '.join(p['secrets']) or '-'}  (ids only: values are never recorded)",
        ]
        lines += [f"  material    {m['uri']}  {m['digest']}".rstrip() for m in p["materials"]]
    s = summary["sbom"]
    if s is None:
        lines.append("sbom        none")
        return lines
    kinds = ", ".join(f"{n} {kind}" for kind, n in s["by_kind"].items())
    lines += [
        f"sbom        {s['format']}  {s['manifest']}",
        f"  describes   {s['describes']['name']}@{s['describes']['version']}",
        f"  made        {s['timestamp']}",
        f"  components  {s['components']} ({kinds or 'none'})" + (f" on {s['operating_system']}" if s["operating_system"] else ""),
    ]
    lines += [f"  e.g.        {c['name']} {c['version']}  {c['purl']}" for c in s["sample"]]
    return lines
