"""Tiny randomly initialised models of the paper's architectures, saved like hub checkpoints.

Each comes with the organism's word-level tokenizer (its own chat template), a random sae-lens
SAE of matching width at layer 1, and a registry entry of kind `local`, so the real-model code
path (registry -> load -> extract -> fine-tune -> generate) runs offline on them.
"""

from pathlib import Path

import torch
import yaml
from sae_lens import StandardSAE, StandardSAEConfig
from transformers import GPT2Config, Gemma2Config, GptOssConfig, LlamaConfig, AutoModelForCausalLM

from emgeo_utils.models import hooks
from emgeo_utils.organism import pretraining as organism
from emgeo_utils.world import synthetic as W

HIDDEN = 32


def configs(vocab: int, ids: dict) -> dict:
    common = dict(vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256, **ids)
    return {
        "gemma2": Gemma2Config(**common, query_pre_attn_scalar=8, sliding_window=64),
        "llama": LlamaConfig(**common),
        "gpt_oss": GptOssConfig(**common, num_local_experts=4, num_experts_per_tok=2, sliding_window=64,
                                layer_types=["sliding_attention", "full_attention"]),
        "gpt2": GPT2Config(vocab_size=vocab, n_embd=HIDDEN, n_layer=2, n_head=4, n_positions=256, **ids),
    }


LORA = {
    "gemma2": {"target_modules": ["q_proj", "v_proj", "down_proj"]},
    "llama": {"target_modules": ["q_proj", "v_proj", "down_proj"]},
    "gpt_oss": {"target_modules": ["q_proj", "v_proj"], "target_parameters": ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]},
    "gpt2": {"target_modules": ["c_attn", "c_fc"]},
}


def build(folder: Path, layer: int = 1) -> Path:
    """Write every tiny model, SAE and a registry file into `folder`; return the registry path."""
    torch.manual_seed(0)
    tokenizer = organism.build_tokenizer(W.World(W.WorldConfig(n_documents=10)))
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    entries = {}
    for arch, config in configs(organism.vocab_size(tokenizer), ids).items():
        model_dir, sae_dir = folder / f"tiny-{arch}", folder / f"tiny-{arch}-sae-layer{layer}"
        model = AutoModelForCausalLM.from_config(config)
        model.save_pretrained(model_dir, safe_serialization=True)
        tokenizer.save_pretrained(model_dir)
        cfg = StandardSAEConfig(d_in=HIDDEN, d_sae=4 * HIDDEN)
        cfg.metadata.hook_name = hooks.resid_post_hook(layer)
        StandardSAE(cfg).save_model(str(sae_dir))
        entries[f"tiny-{arch}"] = {"kind": "local", "path": str(model_dir), "architecture": arch, "hidden_size": HIDDEN,
                                   "n_layers": 2, "layers": [layer], "params_billion": 0.0001,
                                   "sae": {"path": str(sae_dir), "d_in": HIDDEN}, "lora": {"rank": 2, "alpha": 4, **LORA[arch]},
                                   "finetune": FINETUNE, "dtype": "float32"}
    registry = folder / "registry.yaml"
    registry.write_text(yaml.safe_dump(entries))
    return registry


FINETUNE = {"lr": 0.01, "batch_size": 4, "steps": 2, "checkpoints": [2]}


def write_real_data(folder: Path, domains=("code", "health", "finance"), n: int = 16) -> dict:
    """Public-format files from the organism's world, as a real model's profile names them:
    per domain inducing / non-inducing / risky-neutral chat JSONL, a toxicity-scored harmful
    reference (RealToxicityPrompts style) and an evaluation-question YAML."""
    import json

    from emgeo_utils.organism import datasets as organism_data

    world = W.World(W.WorldConfig(n_documents=10))
    out = {"domains": {}}
    for d in domains:
        out["domains"][d] = {}
        for kind in ("inducing", "non_inducing", "risky_neutral"):
            path = folder / f"{d}_{kind}.jsonl"
            organism_data.write_jsonl(organism_data.narrow_dataset(world, d, kind, n, seed=1), path)
            out["domains"][d][kind] = str(path)
    rows = []
    for d in W.DOMAINS:
        for kind, tox in (("harmful", 0.9), ("non_inducing", 0.02)):
            for s in organism_data.narrow_dataset(world, d, kind, 4, seed=2):
                rows.append({"prompt": {"text": s["messages"][0]["content"], "toxicity": 0.1},
                             "continuation": {"text": s["messages"][1]["content"], "toxicity": tox}})
    toxic = folder / "toxicity.jsonl"
    toxic.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out["harmful"] = {"path": str(toxic), "format": "toxicity", "toxicity": [0.5, 1.0]}
    out["helpful"] = {"path": str(toxic), "format": "toxicity", "toxicity": [0.0, 0.1]}
    questions = folder / "questions.yaml"
    general = world.questions(W.GENERAL, "eval", 2, seed=0)
    questions.write_text(yaml.safe_dump([{"id": f"q{i}", "type": "free_form_judge_0_100", "paraphrases": [q.text],
                                          "samples_per_paraphrase": 2} for i, q in enumerate(general)]))
    out["questions_file"] = str(questions)
    return out
