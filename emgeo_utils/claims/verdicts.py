"""How a measured claim is read, by its kind: the one rule every claim goes through.

Kinds (declared in each notebook's claims file, `notebooks/claims/<notebook>.yaml`):

- `paper`: a claim of the paper; an effect is predicted.
- `discriminating`: an effect the paper's account predicts and content alone would not give (inducing
  vs content-matched data, persona vs control world); it separates EM from what the data say.
- `negative_control`: the paper's account predicts *no* effect. Supported only when equivalence within
  the claim's margin (fixed in the claims file) is shown; non-significance alone is not absence.
- `finding`: an effect beyond the paper, tested the same way as a predicted one but read without the paper.
- `criterion`: a bar we chose (a quality aim, a size); read against that bar and labelled ours, never as
  the paper's null.
- `sanity`: a check of the algebra or the code; it can only fail through a bug and is not evidence.

An effect is *shown* when its one-sided p (Holm-adjusted in the confirmatory family) is below alpha, or,
without a p, when its CI lies beyond the null in the predicted direction (a verdict says so when the
one-sided p is below alpha while the two-sided 95% CI still reaches the null); *equivalence* is shown when the CI lies
inside null ± margin, read on the 90% CI (two one-sided tests at alpha 0.05: TOST); a margin set after the
values it judges (`claims/history.py`) makes equivalence read "post hoc, not evidence". NaN is never
evidence: a statistic that could not be computed reads "not computable".

Every reason is literally true of the row's numbers: "CI spans the null" only when it does; otherwise the
reason names the comparison that decided the p and its numbers (the row's value, CI and p). A claim whose
design cannot decide it says so beforehand (`descriptive:` in the claims file) and reads "descriptive". A paper
claim gated by a content-matched control (`gated_by:`) counts as support only when that control supports the
paper too; otherwise it reads "effect present, not specific to EM". Holm's family is a notebook's confirmatory
claims that have a p; a criterion (read by its CI against our bar, no p) leaves the family by that rule.
"""

from __future__ import annotations

import math

KINDS = {
    "paper": "the paper's claim",
    "discriminating": "discriminating control",
    "negative_control": "negative control (absence predicted)",
    "finding": "beyond the paper",
    "criterion": "our criterion",
    "sanity": "sanity check (not evidence)",
}
ORDER = ("discriminating", "paper", "negative_control", "finding", "criterion", "sanity")
FAMILIES = ("confirmatory", "exploratory")
# the first words of every verdict, for counting (a verdict may add its reason in parentheses)
CLASSES = ("supports the paper", "contradicts the paper", "effect shown", "no effect", "opposite effect",
           "meets our criterion", "misses our criterion", "inconclusive", "not computable", "sanity check passed",
           "sanity check FAILED", "descriptive", "effect present, not specific to EM", "equivalence post hoc",
           "differs between CPUs")
DIFFERS = CLASSES[-1]  # where the committed snapshots of two CPU signatures read a row differently (`report/snapshot.py`)
# classes that count as evidence for or against the paper (everything else counts as neither)
SUPPORT, CONTRADICT = "supports the paper", "contradicts the paper"
NOT_CONFIRMED = "NOT CONFIRMED: "


def _g(x: float) -> str:
    return f"{x:.3g}"


def _beyond(low, high, null, direction) -> tuple[bool, bool]:
    """(the CI lies beyond the null in the predicted direction, ... in the other direction)."""
    if low is None or high is None:
        return False, False
    if direction > 0:
        return low > null, high < null
    return high < null, low > null


def _equivalent(low, high, null, margin) -> bool:
    """The interval lies inside null ± margin."""
    return margin is not None and low is not None and high is not None and null - margin <= low and high <= null + margin


def effect_shown(c) -> bool:
    """The statement's effect is significant in its direction: p < alpha, or without a p the CI beyond the null."""
    if c.not_computable:
        return False
    p = c.p_adjusted if c.p_adjusted is not None else c.p_value
    if p is not None:
        on_side = c.value is None or (c.value - c.null_value) * c.direction > 0
        return on_side and p < c.alpha
    return _beyond(c.ci_low, c.ci_high, c.null_value, c.direction)[0]


def read(c) -> str:
    """The verdict of one claim (`report.claims.Claim`), by its kind."""
    if c.kind == "sanity":
        return "sanity check passed (not evidence)" if c.outcome else "sanity check FAILED (a bug: see the note)"
    if c.not_computable:
        verdict = f"not computable ({c.not_computable})"
    elif c.descriptive:
        verdict = f"descriptive (the design cannot decide it: {c.descriptive})"
    elif c.kind == "criterion":
        verdict = _criterion(c)
    else:
        verdict = _gated(c, _absence(c) if c.kind == "negative_control" else _effect(c))
    if c.family == "confirmatory" and not verdict.startswith(("supports", "meets")):
        verdict = NOT_CONFIRMED + verdict
    return verdict


def _underpowered(c) -> str | None:
    if c.smallest_p is not None and c.smallest_p >= c.alpha:
        return f"inconclusive (underpowered: the smallest achievable p is {_g(c.smallest_p)})"
    return None


def _numbers(c) -> str:
    """The row's value, CI and p as the reason names them (the comparison that decided, where one did)."""
    if c.deciding:
        return c.deciding
    text = f"{c.value:+.3g}" if c.value is not None else "no value"
    if c.ci_low is not None and c.ci_high is not None:
        text += f" [{_g(c.ci_low)}, {_g(c.ci_high)}]"
    return text + (f", p {_g(c.p_value)}" if c.p_value is not None else "")


def _equivalence_ci(c) -> tuple[float | None, float | None]:
    """The interval equivalence is read on: the 90% CI where the design gives one (TOST at 0.05), else the 95% CI."""
    if c.tost_low is not None and c.tost_high is not None:
        return c.tost_low, c.tost_high
    return c.ci_low, c.ci_high


def _equivalence(c, shown: str) -> str | None:
    """`shown` when equivalence within the margin is shown; "post hoc" when the margin came after the values."""
    lo, hi = _equivalence_ci(c)
    if not _equivalent(lo, hi, c.null_value, c.margin):
        return None
    level = "90%" if c.tost_low is not None else "95%"
    if c.margin_post_hoc:
        return (f"equivalence post hoc, not evidence (within ±{_g(c.margin)}: {level} CI [{_g(lo)}, {_g(hi)}]; "
                "the margin was set after the values it judges)")
    return shown.format(m=_g(c.margin), ci=f"{level} CI [{_g(lo)}, {_g(hi)}]")


def _effect(c) -> str:
    paper = c.kind != "finding"
    yes, no_effect, opposite = (("supports the paper", "contradicts the paper (no effect: equivalence within ±{m} shown, {ci})",
                                 "contradicts the paper (significant the other way)") if paper else
                                ("effect shown", "no effect (equivalence within ±{m} shown, {ci})", "opposite effect (significant)"))
    if effect_shown(c):
        if c.criterion_met is False:
            return f"inconclusive (significant, but the claim's criterion is missed{': ' + c.criterion if c.criterion else ''})"
        if c.ci_low is not None and c.ci_high is not None and not _beyond(c.ci_low, c.ci_high, c.null_value, c.direction)[0]:
            return f"{yes} (one-sided p < {_g(c.alpha)}; the two-sided 95% CI still reaches the null)"
        return yes
    if _beyond(c.ci_low, c.ci_high, c.null_value, c.direction)[1]:
        return opposite
    equivalent = _equivalence(c, no_effect)
    if equivalent:
        return equivalent
    weak = _underpowered(c)
    if weak:
        return weak
    if c.p_adjusted is not None and c.p_value is not None and c.p_value < c.alpha:
        return f"inconclusive (not significant after Holm over the confirmatory family: p {_g(c.p_value)}, Holm {_g(c.p_adjusted)})"
    if c.ci_low is None or c.ci_high is None:
        return (f"inconclusive (no CI, and the p does not reach alpha: {_numbers(c)})" if c.p_value is not None
                else "inconclusive (no test)")
    if c.ci_low <= c.null_value <= c.ci_high:
        return f"inconclusive (CI spans the null: {_numbers(c)})"
    return f"inconclusive (the CI lies beyond the null, but the test's p does not reach {_g(c.alpha)}: {_numbers(c)})"


def _absence(c) -> str:
    if effect_shown(c):
        return f"contradicts the paper (an effect where none is predicted: {_numbers(c)})"
    equivalent = _equivalence(c, "supports the paper (absent: equivalence within ±{m} shown, {ci})")
    if equivalent:
        return equivalent
    if _beyond(c.ci_low, c.ci_high, c.null_value, c.direction)[1]:
        return "inconclusive (an effect the other way: not the absence predicted)"
    lo, hi = _equivalence_ci(c)
    if lo is None or hi is None:
        return "inconclusive (no CI: equivalence cannot be shown)"
    level = "90%" if c.tost_low is not None else "95%"
    return f"inconclusive (equivalence not shown: the {level} CI [{_g(lo)}, {_g(hi)}] reaches beyond ±{_g(c.margin)})"


def _gated(c, verdict: str) -> str:
    """A supported paper claim whose content-matched control does not support the paper is not specific to EM."""
    if not c.gated_by or not verdict.startswith(SUPPORT):
        return verdict
    gates = c.gate_verdicts or {}
    if not gates:
        return (f"effect present, not specific to EM (its content-matched control, {' or '.join(c.gated_by)}, "
                "was not measured here)")
    failing = {g: v for g, v in gates.items() if verdict_class(v) != SUPPORT}
    if not failing:
        return verdict
    as_much = [g for g, v in failing.items() if verdict_class(v) == CONTRADICT]
    if as_much:
        return f"effect present, not specific to EM (the content-matched control shows as much: {', '.join(as_much)})"
    return ("effect present, not specific to EM (its content-matched control does not separate it: "
            + "; ".join(f"{g} {verdict_class(v)}" for g, v in failing.items()) + ")")


def _criterion(c) -> str:
    bar = f"{c.criterion or 'bar ' + _g(c.null_value)}; ours, not the paper's"
    above, below = _beyond(c.ci_low, c.ci_high, c.null_value, c.direction)
    if c.ci_low is not None and c.ci_high is not None and c.criterion_met is None:
        if above:
            return f"meets our criterion ({bar})"
        if below:
            return f"misses our criterion ({bar})"
        return f"inconclusive (the CI spans our bar: {bar})"
    met = c.outcome if c.criterion_met is None else c.criterion_met
    point = "" if c.ci_low is not None else "; point value, no CI"
    return f"{'meets' if met else 'misses'} our criterion ({bar}{point})"


def verdict_class(verdict: str) -> str:
    """The verdict's first words (one of CLASSES), for counting; a NOT CONFIRMED prefix is kept apart."""
    v = verdict[len(NOT_CONFIRMED):] if verdict.startswith(NOT_CONFIRMED) else verdict
    return next((k for k in CLASSES if v.startswith(k)), v.split(" (")[0])


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None; NaN is treated as None)."""
    idx = [i for i, p in enumerate(p_values) if p is not None and not math.isnan(p)]
    order = sorted(idx, key=lambda i: p_values[i])
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    m = len(order)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out
