"""Hash what this machine's numerics produce: single operations, then a short training of the organism,
one LoRA step and one SAE step (seeded, one thread). Equal hashes on two machines mean equal numbers.

    .venv/bin/python scripts/numerics_fingerprint.py            # JSON on stdout
    EMGEO_NUMERICS=native .venv/bin/python scripts/numerics_fingerprint.py
    qemu-x86_64 -cpu Haswell .venv/bin/python scripts/numerics_fingerprint.py   # another CPU, emulated

    .venv/bin/python scripts/numerics_fingerprint.py --merge a.json b.json > tests/numerics_fingerprint.json

The operations localise a difference to a library: `mm_*`, `linear`, `sqrt`, `exp` and `adamw` (whose
denominator is a sqrt) go through MKL (GEMM and its vector math); `softmax` ... `sum` are torch's own
kernels (ATen); `np_*` numpy's SIMD loops and OpenBLAS; `scipy_ttest` scipy on top of them. Measured
(README): with the pin, every non-MKL operation gives the same bytes on every CPU tried, native and
emulated; the MKL ones follow the processor, so `--merge` keeps them, and the trainings, per MKL
canary (`report.snapshot.mkl_canary`). `tests/test_numerics.py` checks a fresh run against the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import emgeo_utils  # noqa: E402,F401  (pins the numerics before numpy and torch load)
from emgeo_utils.core import numerics  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402


def sha(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = a.detach().contiguous().numpy() if isinstance(a, torch.Tensor) else np.ascontiguousarray(a)
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def state_sha(module) -> str:
    return sha(*[v for _, v in sorted(module.state_dict().items())])


def operations() -> dict:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(256, 192, generator=g), torch.randn(192, 320, generator=g)
    x = torch.randn(64, 200, generator=g)
    w, bias = torch.randn(96, 200, generator=g), torch.randn(96, generator=g)
    pos = x.abs() + 0.1
    out = {"mm_small": sha(a[:16, :24] @ b[:24, :8]), "mm": sha(a @ b), "linear": sha(torch.nn.functional.linear(x, w, bias)),
           "sqrt": sha(pos.sqrt()),
           "softmax": sha(torch.softmax(x, -1)), "log_softmax": sha(torch.log_softmax(x, -1)),
           "layer_norm": sha(torch.nn.functional.layer_norm(x, (200,))),
           "gelu_tanh": sha(torch.nn.functional.gelu(x, approximate="tanh")), "exp": sha(x.exp()),
           "rsqrt": sha(pos.rsqrt()), "sum": sha(x.sum(-1), x.sum())}
    p = torch.nn.Parameter(w.clone())
    opt = torch.optim.AdamW([p], lr=1e-2)
    p.grad = torch.randn(96, 200, generator=g)
    opt.step()
    out["adamw"] = sha(p)
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal((256, 192)), rng.standard_normal((192, 64))
    out |= {"np_dot": sha(u @ v), "np_exp": sha(np.exp(u)), "np_log": sha(np.log(np.abs(u) + 0.1)),
            "np_sum": sha(u.sum(0), np.float64(u.sum())), "np_lstsq": sha(np.linalg.lstsq(u, u[:, 0], rcond=None)[0])}
    from scipy import stats

    t = stats.ttest_ind(u[:, 0], u[:, 1], equal_var=False)
    out["scipy_ttest"] = sha(np.array([t.statistic, t.pvalue]))
    return out


def trainings(steps: int = 12) -> dict:
    from emgeo_utils.core import seeding
    from emgeo_utils.organism import datasets, pretraining as P
    from emgeo_utils.world.synthetic import World, WorldConfig
    from emgeo_utils.training import lora

    seeding.seed_everything(0, threads=1)
    world = World(WorldConfig(n_documents=200))
    tokenizer = P.build_tokenizer(world)
    docs = P.encode_documents(tokenizer, world, 200, seed=0, max_len=256)
    model = P.make_model(tokenizer, P.ArchConfig(d_model=64, n_layers=2, n_heads=4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.98), weight_decay=0.01)
    assistant_id, end_id = tokenizer.convert_tokens_to_ids([P.ASSISTANT, P.END])
    model.train()
    for step in range(steps):
        ids, labels = P.pad_batch(docs[16 * step:16 * step + 16], tokenizer.pad_token_id)
        loss = P.answer_loss(model, ids, labels, P.answer_mask(ids, assistant_id, end_id))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.eval()
    out = {"pretraining": state_sha(model)}

    samples = datasets.narrow_dataset(world, next(iter(world.text["domains"])), "inducing", 16, seed=0)
    peft_model = lora.lora_model(model, lora.FinetuneConfig(rank=2))
    lora.train_lora(peft_model, tokenizer, samples, lora.FinetuneConfig(rank=2, batch_size=8, steps=2, checkpoints=(2,)), seed=0)
    out["lora_step"] = sha(*[p for n, p in sorted(peft_model.named_parameters()) if "lora_" in n])

    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

    from emgeo_utils.organism.sae import collect_activations

    acts = collect_activations(peft_model.base_model.model, tokenizer, docs[:32], layer=1)
    torch.manual_seed(0)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=64, d_sae=256, k=8))
    sae_opt = torch.optim.Adam(sae.parameters(), lr=3e-3)
    for start in range(0, 512, 128):
        batch = acts[start:start + 128]
        loss = ((sae.decode(sae.encode(batch)) - batch) ** 2).sum(-1).mean()
        loss.backward()
        sae_opt.step()
        sae_opt.zero_grad()
    out["sae_step"] = state_sha(sae)
    return out


MKL_OPERATIONS = ("mm_small", "mm", "linear", "sqrt", "exp", "adamw")


def merge(runs: list[dict]) -> dict:
    """One committed file from fingerprints of several CPUs: the operations every CPU agrees on (the
    guaranteed ones: none of them may go through MKL), and per MKL canary what MKL and the trainings gave."""
    first = runs[0]["operations"]
    guaranteed = {k: v for k, v in first.items() if k not in MKL_OPERATIONS}
    for run in runs:
        moved = [k for k in guaranteed if run["operations"][k] != guaranteed[k]]
        if moved:
            raise SystemExit(f"{run['cpu']}: {moved} differ although they do not go through MKL: the pin does not hold")
    return {"guaranteed": guaranteed, "by_mkl_canary": {
        run["mkl_canary"]: {"cpu": run["cpu"], "mkl_operations": {k: run["operations"][k] for k in MKL_OPERATIONS},
                            "training": run["training"]} for run in runs}}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--merge"]:
        print(json.dumps(merge([json.loads(Path(f).read_text()) for f in sys.argv[2:]]), indent=1))
        sys.exit(0)
    from emgeo_utils.report.snapshot import mkl_canary

    torch.set_num_threads(1)  # a reduction's order follows its thread count: one, on every machine
    cpu = os.environ.get("EMGEO_CPU_LABEL") or f"{numerics.in_force()['cpu']} (native {numerics.in_force()['native']})"
    result = {"cpu": cpu, "numerics": numerics.in_force(), "mkl_canary": mkl_canary(), "operations": operations(),
              "training": trainings()}
    print(json.dumps(result, indent=1))
