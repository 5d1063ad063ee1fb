"""What the screen was validated on: the planted check's committed measurement and what it decided.

`make check-screen` (`filtering/planted.py`) writes `RECORD`; the screen (`filtering/screen.py`) quotes it and uses
`DEFAULT_METHOD`, the method with the best AUC there (tested); the report renders it. No heavy import here."""

from emgeo_utils.core import paths

RECORD = paths.PROJECT_ROOT / "results" / "screen" / "planted.csv"
MIN_AUC = 0.8  # the bar, fixed before SmolLM2 was measured: the AUC at the lower end of its 95% CI; chance is 0.5
DEFAULT_METHOD = "persona"  # the best AUC in RECORD (2026-12-07: persona 0.765, judge 0.734, geometry 0.724)
