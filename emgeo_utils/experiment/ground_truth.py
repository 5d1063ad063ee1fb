"""Notebook 07's steps for one run: feature families from the world's ground truth, how well they
are recovered, claim 2 measured against them, and the causal cuts' jobs and table.

Persona features are read where a persona is used (`next_turn`: after the chat, a question of
another domain and the assistant prefix); wording features on the answer itself (`assistant_mean`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emgeo_utils.core import stats
from emgeo_utils.experiment.base import Experiment, Run
from emgeo_utils.features import families
from emgeo_utils.geometry import components, set_test

CONTRASTS = {"persona": "next_turn", "wording": "assistant_mean"}


def contrast_activations(exp: Experiment, run: Run, layer: int, contrast: str, n: int, seed: int,
                         exclude: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Paired SAE activations (positive member, negative member) of `n` ground-truth pairs."""
    pos, neg, probes = exp.ground_truth_pairs(contrast, n, seed, run, exclude)
    acts = exp.features(run, layer, pos + neg, probes + probes)[0][CONTRASTS[contrast]].numpy()
    return acts[:n], acts[n:]


RECOVERY_COLUMNS = ["world", "organism_seed", "family", "read_on", "size", "auc", "auc_null", "p"]


def find_families(exp: Experiment, run: Run, layer: int, n_pairs: int, k: int, alpha: float, n_null: int, seed: int,
                  exclude: tuple[str, ...]) -> tuple[dict, pd.DataFrame]:
    """({family name: feature indices}, recovery table): each family found on one draw of pairs
    (data seed `seed`) and scored on fresh pairs (`seed + 1`) of its own and of the other contrast.
    A model without ground truth has no families (and an empty table)."""
    if not exp.has_ground_truth:
        return {}, pd.DataFrame(columns=RECOVERY_COLUMNS)
    found, fresh, frequency = {}, {}, {}
    for name in CONTRASTS:
        pos, neg = contrast_activations(exp, run, layer, name, n_pairs, seed, exclude)
        found[name] = families.identify(pos, neg, k, alpha)["family"]
        frequency[name] = (np.vstack([pos, neg]) > 0).mean(0)
        fresh[name] = contrast_activations(exp, run, layer, name, n_pairs, seed + 1, exclude)
    rows = [{"world": run.world, "organism_seed": run.seed, "family": name, "read_on": on, "size": len(found[name])}
            | families.recovery(*fresh[on], found[name], frequency[on], n_null, seed)
            for name in CONTRASTS for on in CONTRASTS]
    return found, pd.DataFrame(rows)


def claim2_against(acts, w_dec, samples: list[dict], domain: str, comparison: str, target: np.ndarray, k: int,
                   n_perm: int, seed: int) -> dict:
    """Claim 2's decomposition (inducing vs `comparison`, symmetric selection) with proximity
    measured to a fixed family instead of the harmful set; p as in notebook 03 (both nulls)."""
    dec = components.Decomposition(acts, w_dec, set_test.groups(samples, domain, comparison), k, target=target)
    return components.decompose(dec, n_perm, n_boot=0, seed=seed)


def matched_random(frequency: np.ndarray, family: np.ndarray, n: int, seed: int) -> list[list[int]]:
    """`n` random families like `family` in activation frequency where the cuts read, outside it."""
    if not len(family):
        return []
    return [d.tolist() for d in stats.frequency_matched_draws(frequency, family, n, seed, exclude=family)]


def cut_plan(families_of_run: dict[str, np.ndarray], frequency: np.ndarray, n_random: int, seed: int) -> list[dict]:
    """Every cut of one run: nothing, then per family (and per matched random draw of it) ablation
    and update removal. `family` names what was cut; random draws are `random:<family>`."""
    plan = [{"how": "none", "family": "none", "features": []}]
    for i, (name, fam) in enumerate(families_of_run.items()):
        sets = [(name, list(map(int, fam)))] + [(f"random:{name}", r) for r in
                                                 matched_random(frequency, np.asarray(fam, int), n_random, seed + i)]
        plan += [{"how": how, "family": label, "features": feats} for how in ("ablate", "update") for label, feats in sets]
    return plan


def family_sizes(family: dict) -> pd.DataFrame:
    """Per run: each family's size and how many features each pair of families shares."""
    rows = []
    for r, fam in family.items():
        row = {"world": r.world, "seed": r.seed} | {f"{n} size": len(f) for n, f in fam.items()}
        names = list(fam)
        rows.append(row | {f"{a} ∩ {b}": len(np.intersect1d(fam[a], fam[b])) for i, a in enumerate(names) for b in names[i + 1:]})
    return pd.DataFrame(rows)


def recovery_table(recovery: pd.DataFrame):
    """AUC, its random-family mean and p per world, family and the contrast it is read on."""
    if recovery.empty:
        return "no ground-truth families: this model's data has no known author to contrast"
    return recovery.pivot_table(index=["world", "family"], columns="read_on", values=["auc", "auc_null", "p"]).round(3)


def cut_jobs(exp: Experiment, run: Run, layer: int, plan: list[dict], adapters: dict, step: int, domain: str) -> list[dict]:
    """Jobs for the experiment's EM-under-cuts function: the base model under every ablation (it has
    no update to remove) and each fine-tune (`adapters`: {ft_seed: adapter}) under every cut."""
    common = exp.cut_kwargs(run, layer, domain)
    base_cuts = [{"how": c["how"], "features": c["features"]} for c in plan if c["how"] != "update"]
    out = [common | dict(adapter=None, step=0, cuts=base_cuts)]
    return out + [common | dict(adapter=a, step=step, cuts=[{"how": c["how"], "features": c["features"]} for c in plan])
                  for a in adapters.values()]


def cut_table(run: Run, plan: list[dict], base: list[dict], tuned: dict[int, list[dict]]) -> pd.DataFrame:
    """One row per (fine-tune, cut): EM = the fine-tune's general harmful probability minus the base
    model's under the same ablation (update removal: the uncut base), the drop it makes, and the
    share of the in-domain task kept."""
    base_of = {}
    kept_base = iter(base)
    for c in plan:
        if c["how"] != "update":
            base_of[id(c)] = next(kept_base)
    rows = []
    for s, results in tuned.items():
        em_none = results[0]["general"] - base[0]["general"]
        for c, r in zip(plan, results):
            b = base_of.get(id(c), base[0])
            em = r["general"] - b["general"]
            rows.append({"world": run.world, "organism_seed": run.seed, "ft_seed": s, "how": c["how"],
                         "family": c["family"], "em": em, "em_drop": em_none - em,
                         "task_kept": r["in_domain"] / max(results[0]["in_domain"], 1e-12)})
    return pd.DataFrame(rows)


def versus_random(table: pd.DataFrame) -> pd.DataFrame:
    """Per run, fine-tune, cut and family: the EM drop and task kept beside the mean of its matched random families."""
    cuts = table[table.how != "none"].copy()
    cuts["kind"] = np.where(cuts.family.str.startswith("random:"), "random", "family")
    cuts["family"] = cuts.family.str.removeprefix("random:")
    keys = ["world", "organism_seed", "ft_seed", "how", "family"]
    wide = cuts.groupby(keys + ["kind"])[["em_drop", "task_kept"]].mean().unstack("kind")
    wide.columns = [f"{v}_{k}" for v, k in wide.columns]
    wide = wide.reset_index()
    for col in ("em_drop_random", "task_kept_random"):
        if col not in wide:
            wide[col] = np.nan
    wide["drop_vs_random"] = wide.em_drop_family - wide.em_drop_random
    return wide



def empty_family_note(family: dict, runs: list[Run], world: str, name: str) -> str | None:
    """Why a claim about family `name` in `world` cannot be computed: how many of its units found it empty."""
    n = sum(len(family[r][name]) == 0 for r in runs if r.world == world)
    return f"the {name} family is empty in {n} of {sum(r.world == world for r in runs)} worlds" if n else None
