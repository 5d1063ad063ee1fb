"""Notebook 06's instruments: the first-order prediction, the spillover statistics, the ablation."""

import numpy as np
import pytest
import torch
from sae_lens import TopKSAE, TopKSAEConfig
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from emgeo_utils.mechanism import spillover
from emgeo_utils.mechanism.interventions import ablated
from emgeo_utils.mechanism.changes import decoded_shift, pre_activation
from emgeo_utils.mechanism.first_order import eager_attention, first_order_change, last_position_residuals, lora_update
from emgeo_utils.models import hooks
from emgeo_utils.training.lora import FinetuneConfig, lora_model


def test_first_order_is_exact_for_a_linear_model_in_float64():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64)
    params = {"W": torch.randn(5, 3, generator=g, dtype=torch.float64), "b": torch.randn(3, generator=g, dtype=torch.float64)}
    update = {"W": torch.randn(5, 3, generator=g, dtype=torch.float64)}
    forward = lambda p: x @ p["W"] + p["b"]  # noqa: E731
    measured = forward({**params, "W": params["W"] + update["W"]}) - forward(params)
    predicted = first_order_change(forward, params, update)
    assert torch.allclose(predicted, measured, rtol=0, atol=1e-13)


def test_first_order_error_is_second_order_in_a_nonlinear_model():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, generator=g, dtype=torch.float64)
    params = {"W": torch.randn(6, 6, generator=g, dtype=torch.float64)}
    step = {"W": torch.randn(6, 6, generator=g, dtype=torch.float64)}
    forward = lambda p: torch.tanh(x @ p["W"]) ** 2  # noqa: E731
    errors = []
    for eps in (1e-2, 1e-3):
        update = {"W": eps * step["W"]}
        measured = forward({"W": params["W"] + update["W"]}) - forward(params)
        errors.append(float((first_order_change(forward, params, update) - measured).abs().max()))
    assert 50 < errors[0] / errors[1] < 200  # quadratic: a 10x smaller step, a 100x smaller error


@pytest.fixture(scope="module")
def tiny_lora():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32,
                                       bos_token_id=0, eos_token_id=1, pad_token_id=2)).double().eval()
    peft_model = lora_model(model, FinetuneConfig(rank=2, target_modules=("c_attn", "c_fc")))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.05)
    return peft_model


def test_lora_first_order_matches_finite_differences_and_t1_is_the_fine_tune(tiny_lora):
    ids = [[0, 5, 6, 7], [0, 9, 10]]
    forward = last_position_residuals(tiny_lora, ids, [0, 1], pad_id=2)
    params, update = lora_update(tiny_lora)
    with eager_attention(tiny_lora), torch.no_grad():
        first = first_order_change(forward, params, update)
        along = lambda t: forward({k: v + t * update[k] if k in update else v for k, v in params.items()})  # noqa: E731
        central = (along(1e-5) - along(-1e-5)) / 2e-5
        tuned, base = along(1.0), along(0.0)
        with hooks.capture_resid_post(tiny_lora, [0, 1]) as captured:
            tiny_lora(input_ids=torch.tensor([[0, 5, 6, 7]]))
            direct = torch.stack([captured[0][0, -1], captured[1][0, -1]])
    assert torch.allclose(first, central, atol=1e-8)
    assert torch.allclose(tuned[:, 0], direct, atol=1e-10)  # t = 1 is the model with its adapter
    assert (tuned - base).abs().max() > 1e-4 and not torch.allclose(first, tuned - base, atol=1e-12)


def test_first_order_runs_through_a_llama_adapter():
    """SmolLM2's architecture through peft's wrapper, which does not forward Llama's `model.layers` (hooks unwrap it)."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1, head_dim=8, pad_token_id=0)).double().eval()
    peft_model = lora_model(model, FinetuneConfig(rank=2, target_modules=("q_proj", "v_proj", "down_proj")))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.05)
    forward = last_position_residuals(peft_model, [[1, 5, 6], [1, 7, 8]], [1], pad_id=0)  # float64 eager Llama: no padding
    params, update = lora_update(peft_model)
    with eager_attention(peft_model), torch.no_grad():
        first = first_order_change(forward, params, update)
        step = lambda t: forward({k: v + t * update[k] if k in update else v for k, v in params.items()})  # noqa: E731
        central = (step(1e-3) - step(-1e-3)) / 2e-3
    # Llama's RMSNorm computes in float32 even on float64 inputs: finite differences are float32-accurate only
    assert first.shape == (1, 2, 16) and torch.allclose(first, central, atol=1e-5)
    assert hooks.decoder_layers(peft_model) is hooks.decoder_layers(model)  # the wrapper finds the base model's layers


def _sae(d_in=16, d_sae=64, k=4):
    torch.manual_seed(3)
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k))
    with torch.no_grad():
        sae.W_enc.normal_(0, 0.3)
        sae.W_dec.copy_(sae.W_enc.T)
        sae.b_dec.normal_(0, 0.1)
    return sae


def test_pre_activation_is_the_encoders_linear_read_and_decoded_shift_is_linear():
    sae = _sae()
    x = torch.randn(5, 16)
    acts = sae.encode(x)
    pre = pre_activation(sae, x)
    assert torch.allclose(acts[acts > 0], pre[acts > 0], atol=1e-5)
    v = torch.zeros(64)
    v[[3, 7]] = torch.tensor([1.0, -2.0])
    assert torch.allclose(decoded_shift(sae, v), 1.0 * sae.W_dec[3] - 2.0 * sae.W_dec[7], atol=1e-5)


def test_ablation_removes_exactly_the_sets_decoder_contribution():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32)).eval()
    sae = _sae()
    ids = torch.tensor([[0, 5, 6, 7]])
    def layer_output(features):  # the capture hook runs after the ablation's, so it sees the result
        with torch.no_grad(), ablated(model, sae, 0, features), hooks.capture_resid_post(model, [0]) as captured:
            model(input_ids=ids)
        return captured[0][0, -1]

    clean = layer_output([])
    with torch.no_grad():
        acts = sae.encode(clean)
    chosen = acts.nonzero().flatten()[:2].tolist()
    expected = clean - (acts[chosen][:, None] * sae.W_dec[chosen]).sum(0)
    assert torch.allclose(layer_output(chosen), expected, atol=1e-5)
    assert not torch.allclose(expected, clean, atol=1e-3)


def _world(seed, planted=0.0, harmful_boost=0.0, n=256, d=12):
    """A synthetic fine-tune: observed change = planted * cosine to the targets + noise; the
    harmful set gains `harmful_boost` beyond the readout-only prediction."""
    rng = np.random.default_rng(seed)
    w_dec = rng.normal(size=(n, d))
    targets = np.arange(8)
    train = np.zeros(n)
    train[targets] = rng.uniform(1, 2, 8)
    cos = spillover.cosine_to_targets(w_dec, targets, train[targets])
    observed = planted * cos + rng.normal(0, 0.3, n)
    readout = 0.5 * planted * cos + rng.normal(0, 0.1, n)
    harmful = np.arange(20, 52)
    observed[harmful] += harmful_boost
    activity = rng.random((2000, n)) < 0.05
    ch = {"observed": observed.tolist(), "readout_only": readout.tolist(), "train": train.tolist(),
          "targets": targets.tolist(), "base_frequency": np.full(n, 0.1).tolist(),
          "first_order": observed.tolist(), "first_order_pre": observed.tolist(), "observed_pre": observed.tolist(),
          "first_order_relative_error": 0.0}
    return ch, w_dec, harmful, activity


def test_spillover_finds_a_planted_effect():
    out = spillover.analyse(*_world(0, planted=1.0, harmful_boost=0.3), n_null=200, seed=0)
    assert out["rho_geometry"] > 0.5 and out["p_geometry"] < 0.01
    assert out["p_harmful_excess"] < 0.01 and out["harmful_excess"] > out["harmful_excess_null"]
    assert out["partial_geometry"] > 0.5  # co-activation is independent of geometry here


# --- size of the spillover tests in worlds without spillover ------------------------------------
# 210 null worlds, each tested against 10 random draws: p <= 0.10 exactly when the measured statistic beats
# all 10, which an exchangeable one does with probability 1/11 (a p off by one, #{null >= x} / n, would
# reject at 2/11). A test may reject in at most 30 of the 210 (14%): one of size 0.10 exceeds that with
# probability 0.018, one of exactly 1/11 with 0.005 (binomial, scipy); one of size 0.20 stays within it with
# probability 0.021, one of 2/11 with 0.082. Checked at 0.10 rather than 0.05 (what makes p valid, the
# statistic exchangeable with its draws, is the same at every level; at 0.05 the same power takes 500 runs,
# about 20 s here). Seeded, so the verdict does not flake. Measured: 22, 23, 24 and 24 rejections (in the
# order below). Over 1500 worlds the harmful-set p's reject more often than 1/11 (excess 0.124, amplification
# 0.115): their random sets come from a pool of ~220 features that leaves the harmful set out (drawn from a
# pool that keeps it: 0.084 and 0.081); a size that close to nominal is more than this test is built to see.
SPILLOVER_RUNS, SPILLOVER_DRAWS, SPILLOVER_ALPHA, SPILLOVER_BOUND = 210, 10, 0.10, 30


@pytest.fixture(scope="module")
def null_spillover():
    return [spillover.analyse(*_world(s), n_null=SPILLOVER_DRAWS, seed=s) for s in range(SPILLOVER_RUNS)]


@pytest.mark.parametrize("p", ["p_geometry", "p_beyond_readout", "p_harmful_amplification", "p_harmful_excess"])
def test_spillover_tests_keep_their_size_in_a_null_model(null_spillover, p):
    ps = np.array([o[p] for o in null_spillover])
    assert not np.isnan(ps).any()
    assert (ps <= SPILLOVER_ALPHA).sum() <= SPILLOVER_BOUND, (p, (ps <= SPILLOVER_ALPHA).mean())


def test_spillover_geometry_is_uncorrelated_in_a_null_model(null_spillover):
    """Each rho has sd about 0.06 (248 features): the mean of 210 has sd 0.004."""
    assert abs(np.mean([o["rho_geometry"] for o in null_spillover])) < 0.02


def test_partial_correlation_removes_a_shared_cause():
    rng = np.random.default_rng(0)
    z = rng.normal(size=500)
    x, y = z + 0.3 * rng.normal(size=500), z + 0.3 * rng.normal(size=500)
    assert spillover.partial_spearman(y, x, z) < 0.2 < np.corrcoef(x, y)[0, 1]
