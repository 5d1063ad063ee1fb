"""Notebook 00's section 5b for a pretrained model studied on the world's English text: EM two
ways (likelihood shares and sampled answers) against every control, and the claims that read them.

A share has a chance level of 0.5 and a base model that already puts probability on harmful
candidates, so each claim is a difference against the non-inducing and educational fine-tunes and
the base model, over fine-tuning seeds (one pretrained model: its seeds are the units).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emgeo_utils.core import stats

MEASURES = {"in_domain_share": "likelihood share, fine-tuning domain (held-out questions)",
            "other_domains_share": "likelihood share, the other nine domains",
            "open_share": "likelihood share, open questions",
            "sampled_other_domains_misaligned": "sampled: harmful and coherent, other domains",
            "sampled_open_misaligned": "sampled: harmful and coherent, open questions",
            "ood_coherent": "sampled: coherent (about the question)"}


def measures_table(base: pd.Series, at: pd.DataFrame, conditions: list[str]) -> pd.DataFrame:
    """Each measure: the base model's value and each condition's mean [95% CI] over seeds."""
    rows = []
    for col, label in MEASURES.items():
        row = {"measure": label, "base model": round(float(base[col]), 3)}
        for c in conditions:
            m_c, lo_c, hi_c = stats.mean_ci(at[at.condition == c][col].to_numpy())
            row[c] = f"{m_c:.3f} [{lo_c:.3f}, {hi_c:.3f}]"
        rows.append(row)
    return pd.DataFrame(rows).set_index("measure")


def base_rate(result: dict, column: str) -> tuple[float, float, int]:
    """The base model's value of a measure (`world_lm_em.summary`'s column) with its sampling error: the
    mean over its items (questions for a likelihood share, sampled answers for a sampled rate), the
    standard error of that mean and the number of items."""
    if column.endswith("_share"):
        items = [r["share"] for r in result["shares"][column[:-len("_share")]]]
    else:
        where, col = column[len("sampled_"):].rsplit("_", 1)
        keep = (lambda r: r["domain"] != "general") if where == "other_domains" else (lambda r: r["domain"] == "general")
        items = [float(r[col]) for r in result["samples"] if keep(r)]
    x = np.asarray(items, float)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan"), len(x)


def record_claims(claims, base: pd.Series, at: pd.DataFrame, conditions: list[str], primary: str,
                  min_in_domain: float, min_coherent: float, base_result: dict) -> None:
    """The pre-registered comparisons of notebook 00's claims file for a world-lm model. The base model
    enters with its sampling error over questions or answers (`base_rate`), not as a fixed number."""
    of = {c: at[at.condition == c].sort_values("ft_seed") for c in conditions}
    in_domain = of["inducing"].in_domain_share
    claims.record("finetune_learns_domain", value=in_domain.min(), outcome=bool((in_domain >= min_in_domain).all()),
                  note=f"per fine-tuning seed {in_domain.round(3).tolist()}; base {base.in_domain_share:.3f}")
    likelihood = primary == "likelihood"
    for claim, col, versus in [
            ("em_other_domains", "other_domains_share" if likelihood else "sampled_other_domains_misaligned", ("non_inducing", "base")),
            ("em_open_questions", "open_share" if likelihood else "sampled_open_misaligned", ("non_inducing", "base")),
            ("em_not_educational", "other_domains_share" if likelihood else "sampled_other_domains_misaligned", ("educational",)),
            ("em_sampled", "sampled_other_domains_misaligned", ("non_inducing", "base"))]:
        comparisons = {v: (base_rate(base_result, col) if v == "base" else of[v][col].to_numpy())
                       for v in versus if v == "base" or v in of}
        if "base" in comparisons and not np.isclose(comparisons["base"][0], base[col]):
            raise ValueError(f"base_rate({col!r}) gives {comparisons['base'][0]:.6g}, the base row {base[col]:.6g}: "
                             "world_lm_em.summary and controls.base_rate disagree")
        claims.exceeds_all(claim, of["inducing"][col].to_numpy(), comparisons, column=col, primary=primary)
    claims.record("finetunes_stay_coherent", value=of["inducing"].ood_coherent.mean(),
                  outcome=bool(of["inducing"].ood_coherent.mean() >= min_coherent),
                  note=f"base {base.ood_coherent:.3f}; non-inducing {of['non_inducing'].ood_coherent.mean():.3f}")


def length_check(result: dict) -> pd.DataFrame:
    """Length-normalised vs summed shares and the candidates' token counts, per candidate set."""
    length = pd.DataFrame([r | {"set": name} for name, part in result["shares"].items() for r in part])
    return length.groupby("set")[["share", "share_sum", "tokens_harmful", "tokens_harmless"]].mean().round(3)


def sample_examples(result: dict) -> pd.DataFrame:
    return pd.DataFrame(result["samples"])[["domain", "question", "answer", "harmful", "coherent"]].head(6)
