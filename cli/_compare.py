"""``segscale compare``: two segment runs side by side."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ._console import print_json, stdout
from ._options import JsonOption

__all__ = ["compare"]


def _print_comparison(comparison, top: int = 5) -> None:
    """ARI and customer counts, matched segments, the largest moves, suggestions, where movers went."""
    stdout.print(
        f"adjusted Rand index {comparison.adjusted_rand:.3f} over {comparison.common:,} customers in both runs "
        f"({comparison.gone:,} only in A, {comparison.new:,} only in B); segment-share PSI {comparison.psi:.3f}",
        highlight=False,
    )
    table = Table(title="Matched segments (A -> B)", title_justify="left")
    for column in ("segment in A", "segment in B", "Jaccard", "share A -> B"):
        table.add_column(column, justify="right" if column in ("Jaccard", "share A -> B") else "left", no_wrap=True)
    for match, drift in zip(comparison.matches, comparison.drift):
        shares = f"{drift['share_a']:.1%} -> {drift['share_b']:.1%}"
        table.add_row(match["name_a"], match["name_b"], f"{match['jaccard']:.3f}", shares)
    for segment in comparison.unmatched_a:
        table.add_row(segment["name"], "(none)", "", "")
    for segment in comparison.unmatched_b:
        table.add_row("(none)", segment["name"], "", "")
    stdout.print(table)
    if comparison.moves:
        moves = Table(title=f"Top moves away from the match ({len(comparison.moves)} in all)", title_justify="left")
        for column in ("from (A)", "to (B)", "customers", "share of A segment"):
            moves.add_column(column, justify="left" if column.startswith(("from", "to")) else "right", no_wrap=True)
        for move in comparison.moves[:top]:
            moves.add_row(move["name_a"], move["name_b"], f"{move['customers']:,}", f"{move['share_of_a']:.1%}")
        stdout.print(moves)
    for suggestion in comparison.suggestions:
        stdout.print(f"suggest {suggestion['kind']}: {suggestion['message']}", highlight=False, markup=False)
    if not comparison.suggestions:
        stdout.print("no split or merge suggested", highlight=False)
    where = f"written to {comparison.movers_path}" if comparison.movers_path else "not written (use --out DIR)"
    stdout.print(f"{comparison.movers:,} customers moved; movers {where}", highlight=False)


def compare(
    run_a: Annotated[Path, typer.Argument(help="The earlier segment output (or a run directory holding segments/).")],
    run_b: Annotated[Path, typer.Argument(help="The later segment output (or a run directory holding segments/).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Directory (replaced) for movers.parquet and comparison.json.")
    ] = None,
    split_share: Annotated[
        float, typer.Option(help="Suggest a split when a segment sends at least this share to each of 2+ segments.")
    ] = 0.25,
    merge_share: Annotated[
        float, typer.Option(help="Suggest a merge when 2+ segments each send at least this share to one segment.")
    ] = 0.5,
    converge_ratio: Annotated[
        float, typer.Option(help="Suggest a merge when two matches' z-profile distance shrinks below this ratio.")
    ] = 0.5,
    as_json: JsonOption = False,
):
    """Compare two segment runs: matched segments, transitions, movers, drift, split and merge suggestions."""
    from engine.segments import compare_runs

    comparison = compare_runs(
        run_a, run_b, out=out, split_share=split_share, merge_share=merge_share, converge_ratio=converge_ratio
    )
    if as_json:
        print_json(comparison.to_dict())
        return
    _print_comparison(comparison)
