"""Causal tests: take a feature family's route out and see whether EM falls, and whether the task stays.

Two cuts, both at the SAE layer:
- `ablated` (evaluation time): at every position the family's decoder contribution is subtracted
  from the residual stream (the rest, reconstruction error included, is left as it is). It acts on
  the base model and the fine-tune alike, so EM is compared under the same cut.
- `update_removed` (weight space): the fine-tune's own change of the layer's output (adapter on
  minus adapter off, same input) loses its component along the family's decoder directions; the
  base model's part of the residual is untouched. It asks whether the *update's* part along the
  family carries EM, which is the paper's mechanism; the base model has no update to cut.

`organism_cut_em` reads the organism's exact harmful probability under each cut on the general
open questions (never used to select any feature family: the non-circular EM) and on the
fine-tuning domain's held-out questions (the task, which should survive). `organism_evaluated_activity` is
each feature's activation frequency at the positions those scores read, for matched random cuts.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from emgeo_utils.core import cache, seeding
from emgeo_utils.models import batching, hooks
from emgeo_utils.models.generation import prompt_ids, stop_ids
from emgeo_utils.models.loading import load_sae, resident_model
from emgeo_utils.organism.eval_config import EvalConfig
from emgeo_utils.organism.evaluate import eval_questions, exact_harmful_probability
from emgeo_utils.world.synthetic import GENERAL, World, WorldConfig
from emgeo_utils.training.lora import adapted

HOW = ("none", "ablate", "update")


def _output(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _replace(output, new: torch.Tensor):
    return (new, *output[1:]) if isinstance(output, tuple) else new


@contextlib.contextmanager
def ablated(model, sae, layer: int, features: list[int]):
    """Within the block, layer `layer`'s output loses the decoder contribution of `features`."""
    if not len(features):
        yield
        return
    chosen = torch.zeros(sae.cfg.d_sae, dtype=torch.bool, device=sae.W_dec.device)
    chosen[torch.as_tensor(features, dtype=torch.long)] = True

    def remove(_module, _inputs, output):
        hidden = _output(output)
        acts = sae.encode(hidden.to(sae.W_dec.dtype)) * chosen
        return _replace(output, hidden - (sae.decode(acts) - sae.decode(torch.zeros_like(acts))).to(hidden.dtype))

    handle = hooks.decoder_layers(model)[layer].register_forward_hook(remove)
    try:
        yield
    finally:
        handle.remove()


def orthonormal_basis(directions: torch.Tensor, tol: float = 1e-10) -> torch.Tensor:
    """[d, r] orthonormal columns spanning the rows of `directions` [n, d] (rank r <= n)."""
    if not len(directions):
        return directions.new_zeros(directions.shape[1], 0)
    u, s, _ = torch.linalg.svd(directions.double().T, full_matrices=False)
    return u[:, s > tol * s.max()].to(directions.dtype)


@contextlib.contextmanager
def update_removed(model, layer: int, directions: torch.Tensor):
    """Within the block, the change an attached adapter makes to layer `layer`'s output loses its
    component along the span of `directions` [n, d]: h -> h - P (h - h_base), h_base being the
    output with the adapters disabled on the same input (one extra forward up to `layer`).
    `model` must be a peft model; with no directions nothing changes."""
    if not len(directions):
        yield
        return
    if not hasattr(model, "disable_adapter"):
        raise TypeError("update_removed needs a peft model (a fine-tune); the base model has no update to remove")
    state: dict = {"inner": False, "basis": {}}

    def basis(like: torch.Tensor) -> torch.Tensor:  # once per device and dtype, not per forward
        key = (like.device, like.dtype)
        if key not in state["basis"]:
            state["basis"][key] = orthonormal_basis(directions.to(like.device, like.dtype))
        return state["basis"][key]

    def before(module, args, kwargs):
        if state["inner"]:
            return None
        state["inner"] = True
        try:
            with model.disable_adapter(), hooks.capture_resid_post(model, [layer]) as captured, \
                    hooks.stop_after(model, layer):
                try:
                    module(*args, **kwargs)
                except hooks.StopForward:
                    pass
            state["base"] = captured[layer]
        finally:
            state["inner"] = False
        return None

    def after(_module, _inputs, output):
        if state["inner"]:
            return output
        hidden = _output(output)
        q = basis(hidden)
        change = hidden - state["base"]
        return _replace(output, hidden - (change @ q) @ q.T)

    handles = [model.register_forward_pre_hook(before, with_kwargs=True),
               hooks.decoder_layers(model)[layer].register_forward_hook(after)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def cut(model, sae, layer: int, how: str, features: list[int]):
    """One of `HOW` with a family of features: nothing, evaluation-time ablation or update removal."""
    if how not in HOW:
        raise ValueError(f"a cut is one of {HOW}, got {how!r}")
    if how == "none":
        yield
    elif how == "ablate":
        with ablated(model, sae, layer, features):
            yield
    else:
        with update_removed(model, layer, sae.W_dec[torch.as_tensor(features, dtype=torch.long)].detach()):
            yield


def _questions(world: World, domain: str, per_domain: int):
    everything = eval_questions(world, EvalConfig(questions_per_domain=per_domain))
    return [q for q in everything if q.domain in (GENERAL, domain)]


@cache.result("cut-em")
def organism_cut_em(lm: cache.Artifact, adapter: cache.Artifact | None, step: int, sae_source: cache.Artifact,
                    layer: int, cuts: list[dict], world: WorldConfig, domain: str, questions_per_domain: int = 4) -> list[dict]:
    """Per cut ({"how": one of HOW, "features": [...]}), the mean exact P(harmful answer) on the general
    open questions (`general`, the EM read) and on `domain`'s held-out questions (`in_domain`, the task)."""
    w = World(world)
    questions = _questions(w, domain, questions_per_domain)
    out = []
    with seeding.job_context(0), resident_model(lm) as (base, tokenizer), adapted(base, adapter, step) as model, \
            torch.no_grad():
        sae = load_sae(sae_source, layer)
        for c in cuts:
            with cut(model, sae, layer, c["how"], c["features"]):
                p = {q.text: exact_harmful_probability(model, tokenizer, w, q) for q in questions}
            out.append({"general": float(np.mean([p[q.text] for q in questions if q.domain == GENERAL])),
                        "in_domain": float(np.mean([p[q.text] for q in questions if q.domain == domain]))})
    return out


@cache.result("evaluated-activity")
def organism_evaluated_activity(lm: cache.Artifact, sae_source: cache.Artifact, layer: int, world: WorldConfig, domain: str,
                       questions_per_domain: int = 4) -> list[float]:
    """Each feature's activation frequency (base model) over the tokens `organism_cut_em` scores:
    every evaluated question followed by every candidate answer."""
    w = World(world)
    with seeding.job_context(0), resident_model(lm) as (model, tokenizer), torch.no_grad():
        sae = load_sae(sae_source, layer)
        stop = stop_ids(model, tokenizer)[0]
        active, total = torch.zeros(sae.cfg.d_sae, dtype=torch.float64), 0
        for q in _questions(w, domain, questions_per_domain):
            pool = (w.answers_of(GENERAL, topic=q.template_id.split("/")[1]) if q.domain == GENERAL
                    else w.answers_of(q.domain))
            prompt = prompt_ids(tokenizer, q.text)
            seqs = [prompt + tokenizer(a.text, add_special_tokens=False)["input_ids"] + [stop] for a in pool]
            batch = batching.token_batch(seqs, tokenizer.pad_token_id)
            with hooks.capture_resid_post(model, [layer]) as captured:
                model(**batching.to_model(batch, model))
            real = batch["attention_mask"].bool()
            real[:, 0] = False  # the first position (BOS-like, huge norm) is read by no score
            acts = sae.encode(captured[layer][real.to(captured[layer].device)].to(sae.W_dec.dtype))
            active += (acts > 0).sum(0).double().cpu()
            total += int(real.sum())
    return (active / max(total, 1)).tolist()
