"""Feature extraction: `features.sae_features` against the bare model forward over the same batches.

The limit is the model's forward pass: no reader of activations can do less than run the model
over the padded batches. `sae_features` does more (it tokenises the chats with the chat
template, runs the SAE encoder, pools four readouts) and less (it stops after the hooked
layer); the goal is >= 0.85 of the bare forward's tokens/s. Same tokens on both sides, so the
tokens/s ratio is time(bare) / time(sae_features).

Also against what users write instead, on the same batches: `output_hidden_states=True` (every
layer kept) then the SAE encoder on the chosen layer, and sae-lens's own activation path
where it works offline on a local GPT-2 folder (otherwise the row is skipped with the reason).
The bare forward and the alternatives get the batches already tokenised and padded;
`sae_features` tokenises inside, as callers use it. On the organism's shape and a 4-layer GPT-2
the layer is the last one (notebook 02's primary layer), where stopping early saves only the final
norm and the unembedding (there HF's `hidden_states[-1]` is taken after the final norm, so the
hidden-states path would feed the SAE the wrong activation; it is timed as a throughput reference
only). On a 12-layer GPT-2 the hook sits at mid-depth, as the paper's SAEs do, and stopping after
it saves the upper half of the forward.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch
from sae_lens import TopKSAE, TopKSAEConfig
from transformers import AutoTokenizer

from emgeo_utils.features import activations as features
from emgeo_utils.models import hooks
from emgeo_utils.organism.sae import SAEConfig

from . import common

# shape -> (chat samples, rounds, hooked layer): the last layer (notebook 02's primary layer on the
# organism), and a mid-depth layer of a deeper model, where the paper's SAEs sit (Gemma-2-2B: 12 of 26)
SIZES = {"organism d64x2": (256, 5, 1), "gpt2 d512x4": (64, 3, 3), "gpt2 d512x12": (64, 2, 5)}
BATCH = 32  # sae_features' default


def padded_batches(tok, samples, probes):
    """The batches `sae_features` builds (length-sorted, left-padded), their token count, and
    the seconds the chat template took to tokenise them."""
    start = time.process_time()
    enc = features.encode_with_probes(tok, [s["messages"] for s in samples], probes)
    seconds = time.process_time() - start
    order = np.argsort([len(e.ids) for e in enc], kind="stable")
    batches = []
    for first in range(0, len(order), BATCH):
        rows = [enc[i].ids for i in order[first:first + BATCH]]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), tok.pad_token_id)
        attn = torch.zeros_like(ids)
        for r, x in enumerate(rows):
            ids[r, width - len(x):], attn[r, width - len(x):] = torch.tensor(x), 1
        batches.append({"input_ids": ids, "attention_mask": attn, "position_ids": (attn.cumsum(1) - 1).clamp(min=0)})
    return batches, sum(len(e.ids) for e in enc), seconds


def sae_lens_paths(model, tok, sae, layer: int, batches) -> dict:
    """{name: callable or the reason it does not apply}, for sae-lens's two model wrappers."""
    from sae_lens import HookedSAETransformer
    from sae_lens.analysis.sae_transformer_bridge import SAETransformerBridge

    out = {}
    with tempfile.TemporaryDirectory(prefix="emgeo-bench-") as folder:
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        local_tok = AutoTokenizer.from_pretrained(folder)  # sae-lens needs a tokenizer with a name_or_path
        try:
            HookedSAETransformer.from_pretrained(folder, tokenizer=local_tok)
            out["sae-lens HookedSAETransformer"] = "loads, but this benchmark does not time it"
        except Exception as err:  # expected: it only knows official TransformerLens model names
            message = str(err).replace(folder, "<local folder>").split(" Valid")[0]
            out["sae-lens HookedSAETransformer"] = (f"does not apply offline to a local GPT-2: from_pretrained takes "
                                                    f"official TransformerLens names only ({type(err).__name__}: {message})")
        try:
            bridge = SAETransformerBridge.boot_transformers(folder, tokenizer=local_tok)
        except Exception as err:
            out["sae-lens SAETransformerBridge"] = f"does not work offline here: {type(err).__name__}: {err}"[:150]
            return out
    acts = f"{sae.cfg.metadata.hook_name}.hook_sae_acts_post"

    def bridge_path():
        for b in batches:  # the SAE spliced in; cache only its activations; stop after the layer
            bridge.run_with_cache_with_saes(b["input_ids"], attention_mask=b["attention_mask"], saes=[sae],
                                            names_filter=lambda name: name.endswith("hook_sae_acts_post"),
                                            stop_at_layer=layer + 1)

    _, cache = bridge.run_with_cache_with_saes(batches[0]["input_ids"], saes=[sae], stop_at_layer=layer + 1,
                                               names_filter=lambda name: name.endswith("hook_sae_acts_post"))
    assert len(cache.keys()) == 1, f"expected only {acts}, got {list(cache.keys())}"
    out["sae-lens SAETransformerBridge"] = bridge_path
    return out


@torch.no_grad()
def measure(shape: str, n_samples: int, rounds: int, layer: int) -> list[common.Row]:
    common.setup(seed=0, threads=1)
    w = common.world()
    tok = common.tokenizer(w)
    arch = common.SHAPES[shape]
    model = common.gpt2(tok, arch)
    sae_cfg = TopKSAEConfig(d_in=arch.d_model, d_sae=SAEConfig.expansion * arch.d_model, k=SAEConfig.k)
    sae_cfg.metadata.hook_name = hooks.resid_post_hook(layer)
    sae = TopKSAE(sae_cfg)  # random weights: the encoder's cost does not depend on them
    samples, probes = common.chat_samples(w, n_samples)
    batches, n_tokens, tokenise_s = padded_batches(tok, samples, probes)

    def bare():
        for b in batches:
            model(**b)

    def extract():
        features.sae_features(model, tok, sae, layer, samples, probes, batch_size=BATCH)

    def hidden_states():
        for b in batches:
            sae.encode(model(**b, output_hidden_states=True).hidden_states[layer + 1])

    def forward_to_layer():  # the forward sae_features runs, without the rest (for the breakdown)
        for b in batches:
            try:
                with hooks.stop_after(model, layer):
                    model(**b)
            except hooks.StopForward:
                pass

    resid = []
    with hooks.capture_resid_post(model, [layer]) as captured:
        for b in batches:
            model(**b)
            resid.append(captured[layer])

    def encode():  # the SAE encoder alone on the same activations (for the breakdown)
        for r in resid:
            sae.encode(r)

    paths = {"bare forward": bare, "sae_features": extract, "output_hidden_states + encode": hidden_states}
    parts = {"forward to the layer": forward_to_layer, "SAE encode": encode}
    skipped = {}
    for name, path in sae_lens_paths(model, tok, sae, layer, batches).items():
        (paths if callable(path) else skipped)[name] = path
    extract()  # warm-up (first calls allocate)
    best, _ = common.side_by_side(paths | parts, rounds)
    print(f"  [{shape}, layer {layer}, {n_samples} chats, {n_tokens} tokens, 1 thread] "
          + ", ".join(f"{k}: {n_tokens / best[k]:,.0f} tok/s" for k in paths) + " (CPU time)")
    total, known = best["sae_features"], {"chat-template tokenisation": tokenise_s} | {k: best[k] for k in parts}
    print("  sae_features' time: " + ", ".join(f"{k} {v / total:.0%}" for k, v in known.items())
          + f", the rest (batching, copies, per-sample pooling) {1 - sum(known.values()) / total:.0%}")
    rows = [common.Row("1 features", f"sae_features / bare forward tok/s [{shape}, layer {layer}]", best["bare forward"] / best["sae_features"],
                       "x", (">=", 0.85), note=f"tokenisation {tokenise_s / total:.0%} of its time")]
    for name in paths:
        if name not in ("bare forward", "sae_features"):
            rows.append(common.Row("1 features", f"sae_features / {name} tok/s [{shape}, layer {layer}]", best[name] / best["sae_features"], "x"))
    for name, why in skipped.items():
        print(f"  {name}: skipped, {why}")
        rows.append(common.Row("1 features", f"sae_features / {name} [{shape}, layer {layer}]", None, "x", missing="skipped",
                               note=why))
    return rows


def run() -> list[common.Row]:
    """Feature extraction on both shapes."""
    return [row for shape, (n, rounds, layer) in SIZES.items() for row in measure(shape, n, rounds, layer)]
