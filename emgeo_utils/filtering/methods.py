"""The screen's three scores of a chat row, computed side by side on the same rows.

- `geometry` (the paper's): the row's SAE features weighted by their decoder proximity to the harmful set
  (`ranking.geometry_scores`);
- `persona`: the row's residual activation projected on the harmful-minus-helpful direction of the reference
  rows (a persona vector, `ranking.persona_direction`), at the same layer and readout;
- `judge`: the offline text judge (`judges.text.TextJudge`: MiniLM sentence embeddings and a logistic
  regression) trained on the reference rows' answers, harmful against helpful. It reads the answer's text only.

The reference rows are the user's (`--harmful-data`, `--helpful-data`) or, by default, the world's answers in
English, every advice domain, harmful against helpful (`builtin_reference`): text that ships with the project.
Each method also scores the helpful reference rows, cross-fitted (a row never scores with a direction or judge fitted
on itself), so a screened row's percentile says how unusual it is among helpful answers.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from emgeo_utils.features import activations, selection
from emgeo_utils.filtering import ranking
from emgeo_utils.judges.text import TextJudge
from emgeo_utils.world import english
from emgeo_utils.world.synthetic import DOMAINS, World, WorldConfig

METHODS = ("geometry", "persona", "judge")
FOLDS = 5
TOP_FEATURES = 3
SYSTEM = "You are a helpful assistant."  # the system turn the world's English chats carry


@dataclasses.dataclass
class Reference:
    """Reference rows as the screen scores them: their samples and probes, harmful first."""

    harmful: list[dict]
    helpful: list[dict]
    harmful_probes: list[str]
    helpful_probes: list[str]
    source: str  # in words, for the output


def builtin_reference(experiment, per_domain: int = 8, seed: int = 0) -> Reference:
    """The world's answers, `per_domain` harmful and helpful ones of every advice domain (to fresh questions, not
    the fine-tuning data's): in the organism's own words for the organism, in English for every other model."""
    if experiment.is_organism:
        harmful, helpful = ([s for d in experiment.domains() for s in experiment.narrow(d, kind, per_domain, seed)]
                            for kind in ("harmful", "helpful"))
    else:
        world = World(WorldConfig())
        harmful, helpful = ([s for d in DOMAINS for s in english.dataset(world, d, kind, per_domain, SYSTEM, seed)]
                            for kind in ("harmful", "helpful"))
    return Reference(harmful, helpful, experiment.probes(harmful), experiment.probes(helpful),
                     f"the world's answers ({len(harmful)} harmful, {len(helpful)} helpful, every advice domain; built in)")


def answer(sample: dict) -> str:
    return next(m["content"] for m in reversed(sample["messages"]) if m["role"] == "assistant")


@dataclasses.dataclass
class Scores:
    rows: dict[str, np.ndarray]  # method -> a score per screened row (higher: nearer harmful)
    helpful_reference: dict[str, np.ndarray]  # method -> cross-fitted scores of the helpful reference rows
    top_features: list[str]  # per screened row, the geometry score's largest contributions ("id:share")
    harmful_features: torch.Tensor | None


def _folds(n: int, seed: int = 0) -> list[np.ndarray]:
    return np.array_split(np.random.default_rng(seed).permutation(n), min(FOLDS, n))


def score(methods: list[str], model, tokenizer, sae, layer: int, readout: str, variant: str, samples: list[dict],
          probes: list[str], reference: Reference, k: int, harmful_features: torch.Tensor | None = None) -> Scores:
    """Every method's score of the screened rows and of the helpful reference rows. `sae` is needed by the
    geometry method only (None otherwise: persona reads the residual stream, the judge the text)."""
    rows, ref_scores, top = {}, {}, [""] * len(samples)
    n_h, n_ok = len(reference.harmful), len(reference.helpful)
    is_harmful = np.arange(n_h + n_ok) < n_h
    if {"geometry", "persona"} & set(methods):
        acts = pooled(model, tokenizer, sae, layer, samples, probes, readout, "scoring")
        ref = pooled(model, tokenizer, sae, layer, reference.harmful + reference.helpful,
                     reference.harmful_probes + reference.helpful_probes, readout, "reference")
    if "geometry" in methods:
        given = harmful_features

        def harmful_of(keep: np.ndarray) -> torch.Tensor:
            return given if given is not None else selection.select(
                ref[readout][torch.from_numpy(keep & is_harmful)], ref[readout][torch.from_numpy(keep & ~is_harmful)], k)

        def proximity_of(keep: np.ndarray) -> torch.Tensor:
            return ranking.feature_proximity(sae.W_dec.detach(), harmful_of(keep))

        harmful_features = harmful_of(np.ones(n_h + n_ok, bool))
        proximity = ranking.feature_proximity(sae.W_dec.detach(), harmful_features)
        rows["geometry"] = ranking.geometry_scores(acts[readout], proximity, variant)
        ref_scores["geometry"] = _cross_fitted_helpful(
            n_h, n_ok, proximity_of, lambda prox, idx: ranking.geometry_scores(ref[readout][idx], prox, variant))
        top = top_contributions(acts[readout], proximity)
    if "persona" in methods:
        resid, ref_resid = acts[f"resid:{readout}"], ref[f"resid:{readout}"]

        def direction_of(keep: np.ndarray) -> torch.Tensor:
            return ranking.persona_direction(ref_resid[torch.from_numpy(keep & is_harmful)], ref_resid[torch.from_numpy(keep & ~is_harmful)])

        rows["persona"] = ranking.projection_scores(resid, direction_of(np.ones(n_h + n_ok, bool)))
        ref_scores["persona"] = _cross_fitted_helpful(n_h, n_ok, direction_of,
                                                      lambda direction, idx: ranking.projection_scores(ref_resid[idx], direction))
    if "judge" in methods:
        texts = [answer(s) for s in reference.harmful + reference.helpful]

        def judge_of(keep: np.ndarray) -> TextJudge:
            return TextJudge().fit([t for t, kept in zip(texts, keep) if kept], list(is_harmful[keep]))

        rows["judge"] = judge_of(np.ones(n_h + n_ok, bool)).score([answer(s) for s in samples])
        ref_scores["judge"] = _cross_fitted_helpful(n_h, n_ok, judge_of, lambda judge, idx: judge.score([texts[i] for i in idx]))
    return Scores(rows, ref_scores, top, harmful_features)


def pooled(model, tokenizer, sae, layer: int, samples: list[dict], probes: list[str], readout: str, desc: str) -> dict:
    """`{readout: SAE features, resid:<readout>: residual stream}` pooled per row (features only with an SAE)."""
    if sae is not None:
        return activations.sae_features(model, tokenizer, sae, layer, samples, probes, (readout,), desc=desc)
    encoded = activations.encode_with_probes(tokenizer, [s["messages"] for s in samples], probes)
    out = torch.zeros(len(samples), model.config.hidden_size)
    for idx, resid, attn, answer_mask in activations.residual_batches(model, tokenizer, layer, encoded, desc=desc):
        # the readouts' positions, as `activations.sae_features` pools them
        first = (attn.long().cumsum(1) == 1) & attn
        probe = torch.tensor([len(encoded[i].ids) - encoded[i].n_sample for i in idx], device=attn.device)
        in_sample = attn & (torch.arange(attn.shape[1], device=attn.device) < attn.shape[1] - probe[:, None])
        last = torch.zeros_like(attn)
        last[:, -1] = True  # left padding: every row's last token
        masks = {"assistant_mean": answer_mask, "assistant_max": answer_mask, "all_mean": in_sample & ~first, "next_turn": last}
        out[torch.from_numpy(idx)] = activations.pool(resid.float(), masks[readout], readout).cpu()
    return {f"resid:{readout}": out}


def _cross_fitted_helpful(n_harmful: int, n_helpful: int, fit, apply) -> np.ndarray:
    """Scores of the helpful reference rows, each from a fit (on a keep-mask of the reference) that left its fold out."""
    out = np.zeros(n_helpful)
    for fold in _folds(n_helpful):
        keep = np.ones(n_harmful + n_helpful, bool)
        keep[n_harmful + fold] = False
        out[fold] = apply(fit(keep), torch.from_numpy(n_harmful + fold))
    return out


def top_contributions(acts: torch.Tensor, proximity: torch.Tensor) -> list[str]:
    """Per row, the features that add most to its geometry score, with their share of it ("id:share")."""
    contribution = acts.float().clamp(min=0) * proximity
    total = contribution.sum(1, keepdim=True).clamp(min=1e-12)
    share, ids = (contribution / total).topk(TOP_FEATURES, dim=1)
    return [" ".join(f"{int(i)}:{float(s):.2f}" for i, s in zip(row_ids, row_share) if s > 0)
            for row_ids, row_share in zip(ids, share)]


def percentile(scores: np.ndarray, helpful_reference: np.ndarray) -> np.ndarray:
    """Each score's percentile among the helpful reference rows' (100: above every helpful answer)."""
    ranked = np.sort(helpful_reference)
    return 100.0 * np.searchsorted(ranked, scores, side="right") / len(ranked)
