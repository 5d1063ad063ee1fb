"""Feature cards: what a feature responds to and what it writes.

A card shows a feature's top-activating contexts (tokens shaded by activation), the tokens its
decoder direction promotes through the unembedding (logit lens), and, for SAEs with a
Neuronpedia id, a link to the public dashboard.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import torch

from emgeo_utils.core import cache, seeding
from emgeo_utils.features.activations import encode_with_probes, residual_batches
from emgeo_utils.models import hooks
from emgeo_utils.models.loading import load_sae, resident_model

NEURONPEDIA = "https://www.neuronpedia.org/{id}/{feature}"


@torch.no_grad()
def top_contexts(model, tokenizer, sae, layer: int, samples: list[dict], features: list[int], n_top: int = 5,
                 probes: list[str] | None = None, batch_size: int = 32) -> dict[int, list[dict]]:
    """For each feature, the `n_top` samples where it fires most, with per-token activations.

    One batched forward pass serves every feature and every sample.
    """
    encoded = encode_with_probes(tokenizer, [s["messages"] for s in samples], probes or None)
    idx = torch.tensor(features)
    best: dict[int, list[tuple[float, int, list[float]]]] = {f: [] for f in features}
    for rows, resid, attn, _ in residual_batches(model, tokenizer, layer, encoded, batch_size, desc="feature cards"):
        acts = sae.encode(resid.to(sae.W_dec.device, sae.W_dec.dtype))[..., idx].float().cpu()  # [b, width, n_features]
        for row, i in enumerate(rows):
            token_acts = acts[row, attn.shape[1] - len(encoded[i].ids):]
            peaks = token_acts.max(0).values
            for j, f in enumerate(features):
                best[f].append((float(peaks[j]), int(i), token_acts[:, j].tolist()))
    out = {}
    for f in features:
        top = sorted(best[f], key=lambda t: -t[0])[:n_top]
        out[f] = [{"sample": i, "max": a, "tokens": tokenizer.convert_ids_to_tokens(encoded[i].ids), "acts": acts}
                  for a, i, acts in top]
    return out


def logit_lens(model, tokenizer, sae, feature: int, n: int = 8) -> tuple[list[str], list[str]]:
    """Tokens most promoted and most suppressed by the feature's decoder direction."""
    unembed = model.get_output_embeddings().weight.detach().float()
    direction = sae.W_dec[feature].detach().float().to(unembed.device)
    weight = hooks.final_norm_weight(model)
    if weight is not None:
        direction = direction * weight.float().to(unembed.device)
    logits = unembed @ direction
    top = tokenizer.convert_ids_to_tokens(torch.topk(logits, n).indices.tolist())
    bottom = tokenizer.convert_ids_to_tokens(torch.topk(-logits, n).indices.tolist())
    return top, bottom


@cache.artifact("feature-cards")
def card_data(model_source, sae_source, layer: int, samples: list[dict], features: list[int], n_top: int = 5,
              probes: list[str] | None = None, *, out: Path) -> dict:
    """Cached `top_contexts` and `logit_lens` of `features` (what the cards show), for a model
    and SAE source (see `models.loading`)."""
    with seeding.job_context(0), resident_model(model_source) as (model, tokenizer):
        sae = load_sae(sae_source, layer).to(hooks.layer_device(model, layer))  # SAEs load on the CPU
        contexts = top_contexts(model, tokenizer, sae, layer, samples, features, n_top, probes)
        lens = {f: logit_lens(model, tokenizer, sae, f) for f in features}
    (out / "cards.json").write_text(json.dumps({str(f): {"contexts": contexts[f], "logit_lens": lens[f]} for f in features}))
    return {"n_features": len(features)}


def load_card_data(artifact: cache.Artifact) -> dict[int, dict]:
    """{feature: {"contexts": [...], "logit_lens": (promoted, suppressed)}} from `card_data`."""
    return {int(f): v for f, v in json.loads((artifact.path / "cards.json").read_text()).items()}


def context_html(tokens: list[str], acts: list[float], scale: float) -> str:
    spans = []
    for tok, a in zip(tokens, acts):
        alpha = 0.0 if scale <= 0 else max(0.0, min(1.0, a / scale))
        spans.append(f'<span style="background: rgba(214,39,40,{alpha:.2f})" title="{a:.2f}">{html.escape(tok)}</span>')
    return " ".join(spans)


def card_html(feature: int, label: str, contexts: list[dict], promoted: list[str], suppressed: list[str],
              neuronpedia_id: str | None = None) -> str:
    scale = max((c["max"] for c in contexts), default=0.0)
    link = (f' · <a href="{NEURONPEDIA.format(id=neuronpedia_id, feature=feature)}">Neuronpedia</a>'
            if neuronpedia_id else "")
    rows = "".join(f"<li><code>{c['max']:.2f}</code> {context_html(c['tokens'], c['acts'], scale)}</li>" for c in contexts)
    return (f"<div style='margin-bottom:1em'><b>feature {feature}</b> ({html.escape(label)}){link}<br>"
            f"promotes: <code>{html.escape(' '.join(promoted))}</code> · suppresses: "
            f"<code>{html.escape(' '.join(suppressed))}</code><ol>{rows}</ol></div>")
