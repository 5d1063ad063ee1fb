"""A notebook's prose asserts no result by itself: a sentence that names a result ties it to a declared claim
(whose verdict the notebook's last cell and the claims table give), and no heading states an outcome."""

import json
import re

from emgeo_utils.claims import specs as claim_specs
from emgeo_utils.core import paths

NOTEBOOKS = sorted(paths.notebooks_dir().glob("0*.ipynb"))
OUTCOME_WORDS = re.compile(r"\b(reproduced|confirmed|shown|holds|established|emerges|proved|works)\b", re.I)


def _markdown(nb):
    return ["".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "markdown"]


def test_every_claim_the_prose_names_is_declared():
    declared = {c for nb in NOTEBOOKS for c in claim_specs.specs(nb.stem)}
    for nb in NOTEBOOKS:
        for text in _markdown(nb):
            for group in re.findall(r"\bclaims? ((?:`\w+`(?:,? (?:and )?)?)+)", text.replace("\n", " ")):
                for claim in re.findall(r"`(\w+)`", group):
                    assert claim in declared, f"{nb.name}: the prose names claim {claim!r}, which no claims file declares"


def test_no_heading_states_an_outcome():
    """A heading asks (it ends with '?') or names a step; what came out is the claims' to say."""
    for nb in NOTEBOOKS:
        for text in _markdown(nb):
            for heading in re.findall(r"^#+ .*$", text, re.M):
                if not heading.rstrip().endswith("?"):
                    assert not OUTCOME_WORDS.search(heading), f"{nb.name}: the heading {heading!r} states an outcome"
