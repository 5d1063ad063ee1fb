"""Feature extraction encodes only the positions a readout pools, and gets what pooling a full
`[batch, width, d_sae]` encode would."""

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig

from emgeo_utils.features import activations


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_position_wise_encoding_equals_dense_pooling(chunk):
    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=16, d_sae=64))
    with torch.no_grad():
        sae.b_enc.normal_()
    resid = torch.randn(5, 9, 16)
    answer = torch.rand(5, 9) > 0.5
    answer[2] = False  # a sample with no assistant token
    masks = {"assistant_mean": answer, "assistant_max": answer, "all_mean": torch.rand(5, 9) > 0.3,
             "next_turn": torch.zeros(5, 9, dtype=torch.bool)}
    masks["next_turn"][:, -1] = True
    pooled = activations.pool_sae(sae, resid, masks, chunk)
    dense = sae.encode(resid)
    for r, mask in masks.items():
        expected = activations.pool(dense, mask, r)
        assert torch.allclose(pooled[r], expected, atol=1e-5, equal_nan=True), r
    assert torch.isinf(pooled["assistant_max"][2]).all() and (pooled["assistant_mean"][2] == 0).all()
