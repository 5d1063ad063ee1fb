"""The causal test: take the harmful features' route out at the SAE layer and see whether EM falls.

`ablated` subtracts, at every position, what a feature set contributes to the residual stream
through the SAE's decoder (the rest of the residual, reconstruction error included, is left as
it is). `organism_exact_em` measures the organism's exact harmful probability (no sampling)
out of domain and in the fine-tuning domain, with a set ablated, for a base model or a fine-tune.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from emgeo_utils.core import cache, seeding
from emgeo_utils.models import hooks
from emgeo_utils.models.loading import load_sae, resident_model
from emgeo_utils.organism.evaluate import EvalConfig, eval_questions, exact_harmful_probability
from emgeo_utils.organism.world import GENERAL, World, WorldConfig
from emgeo_utils.training.lora import adapted


@contextlib.contextmanager
def ablated(model, sae, layer: int, features: list[int]):
    """Within the block, layer `layer`'s output loses the decoder contribution of `features`."""
    if not len(features):
        yield
        return
    chosen = torch.zeros(sae.cfg.d_sae, dtype=torch.bool, device=sae.W_dec.device)
    chosen[torch.as_tensor(features, dtype=torch.long)] = True

    def remove(_module, _inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        acts = sae.encode(hidden.to(sae.W_dec.dtype)) * chosen
        new = hidden - (sae.decode(acts) - sae.decode(torch.zeros_like(acts))).to(hidden.dtype)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = hooks.decoder_layers(model)[layer].register_forward_hook(remove)
    try:
        yield
    finally:
        handle.remove()


@cache.result("ablated-em")
def organism_exact_em(lm: cache.Artifact, adapter: cache.Artifact | None, step: int, sae_source: cache.Artifact,
                      layer: int, feature_sets: list[list[int]], world: WorldConfig, domain: str,
                      questions_per_domain: int = 4) -> list[dict]:
    """Per feature set (an empty one: nothing ablated), the mean exact P(harmful answer) over the
    other domains' held-out questions (`ood`) and over the fine-tuning domain's (`in_domain`)."""
    w = World(world)
    questions = [q for q in eval_questions(w, EvalConfig(questions_per_domain=questions_per_domain)) if q.domain != GENERAL]
    out = []
    with seeding.job_context(0), resident_model(lm) as (base, tokenizer), adapted(base, adapter, step) as model, \
            torch.no_grad():
        sae = load_sae(sae_source, layer)
        for features in feature_sets:
            with ablated(model, sae, layer, features):
                p = {q.text: exact_harmful_probability(model, tokenizer, w, q) for q in questions}
            out.append({"ood": float(np.mean([p[q.text] for q in questions if q.domain != domain])),
                        "in_domain": float(np.mean([p[q.text] for q in questions if q.domain == domain]))})
    return out
