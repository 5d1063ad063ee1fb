"""docs/results.md's block is a fresh rendering of the committed claims snapshots."""

from emgeo_utils.report import results_block


def test_results_block_is_rendered_from_the_snapshots():
    with open(results_block.readme()) as f:
        text = f.read()
    assert results_block.current(text) == results_block.render_block(), (
        "docs/results.md's block is stale: run `python -m emgeo_utils.report.results_block`")
