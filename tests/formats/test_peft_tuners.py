"""Every PEFT tuner RankScope reads, saved by the real ``peft`` package: ΔW equals merge_and_unload − base."""

from __future__ import annotations

import pytest
import torch

from adapters.delta import CheckpointError
from adapters.formats import load
from tests.formats.helpers import expected_delta, peft, peft_round_trip, tiny

TOL = 1e-5

# name -> (config class, kwargs, needs base, expected method)
CASES = {
    "dora": ("LoraConfig", dict(r=4, lora_alpha=6, use_dora=True, target_modules=["lin0", "conv"]), True, "dora"),
    "adalora": ("AdaLoraConfig", dict(init_r=6, target_r=2, total_step=10, lora_alpha=4,
                                      target_modules=["lin0", "lin1"]), False, "adalora"),
    "vera": ("VeraConfig", dict(r=8, target_modules=["lin0", "lin1"]), True, "vera"),
    "vera_regenerated": ("VeraConfig", dict(r=8, target_modules=["lin0", "lin1"], save_projection=False,
                                            projection_prng_key=7), True, "vera"),
    "loha": ("LoHaConfig", dict(r=4, alpha=6, target_modules=["lin0", "conv"]), False, "loha"),
    "loha_cp": ("LoHaConfig", dict(r=3, alpha=2, target_modules=["conv"], use_effective_conv2d=True), False, "loha"),
    "lokr": ("LoKrConfig", dict(r=2, alpha=3, target_modules=["lin0", "lin1", "conv"]), False, "lokr"),
    "lokr_decomposed": ("LoKrConfig", dict(r=2, alpha=5, target_modules=["lin0", "conv"], decompose_both=True,
                                           decompose_factor=4, use_effective_conv2d=True), False, "lokr"),
    "vblora": ("VBLoRAConfig", dict(r=4, vector_length=8, num_vectors=32, topk=3,
                                    target_modules=["lin0", "lin1"]), False, "vblora"),
    "vblora_topk": ("VBLoRAConfig", dict(r=4, vector_length=16, num_vectors=300, topk=2, save_only_topk_weights=True,
                                         target_modules=["lin0", "lin1"]), False, "vblora"),
    "randlora": ("RandLoraConfig", dict(r=8, randlora_alpha=12, target_modules=["lin0", "lin1"]), True, "randlora"),
    "shira": ("ShiraConfig", dict(r=2, target_modules=["lin0", "lin1"]), True, "shira"),
    "fourierft": ("FourierFTConfig", dict(n_frequency=60, scaling=10.0, random_loc_seed=123,
                                          target_modules=["lin0", "lin1"]), True, "fourierft"),
    "ia3": ("IA3Config", dict(target_modules=["lin0", "lin1", "conv"], feedforward_modules=["lin1"]), True, "ia3"),
    "oft": ("OFTConfig", dict(oft_block_size=8, target_modules=["lin0", "lin1"]), True, "oft"),
    "oft_cayley_coft": ("OFTConfig", dict(oft_block_size=4, target_modules=["lin0"], use_cayley_neumann=False,
                                          coft=True, eps=1e-2), True, "oft"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tuner_matches_peft_merge(tmp_path, case) -> None:
    cls, kw, needs_base, method = CASES[case]
    base = tiny()
    std = 0.5 if case == "loha_cp" else 0.1  # the CP product of four small factors is tiny otherwise
    base_sd, merged_sd = peft_round_trip(base, getattr(peft(), cls)(**kw), tmp_path, std=std)
    if needs_base:
        with pytest.raises(CheckpointError, match="base"):
            load(tmp_path)
    ds = load(tmp_path, base=base_sd)
    assert ds.method == method and ds.warnings == [], ds.warnings
    assert sorted(ds.names) == sorted(kw["target_modules"])
    for d in ds.deltas():
        want = expected_delta(base_sd, merged_sd, d.name)
        assert want.abs().max() > 1e-4, (case, d.name)
        assert torch.allclose(d.dense(torch.float64), want, atol=TOL, rtol=0), (d.name, (d.dense(torch.float64) - want).abs().max())
        assert d.n_params and d.n_params > 0
        if case == "ia3" and d.bias is not None:
            assert torch.allclose(d.bias.double(), expected_delta(base_sd, merged_sd, d.name, "bias"), atol=TOL)
    if case == "shira":
        assert ds["lin0"].kind == "sparse" and ds["lin0"].sparse[0].nnz == 2 * (32 + 64)


def test_adalora_pruned_rank_pattern_and_rank_zero_module(tmp_path) -> None:
    """A file pruned by AdaLoRA's budget allocation: rows dropped per rank_pattern, one module at rank 0."""
    import copy

    from peft import AdaLoraConfig, get_peft_model

    from tests.formats.helpers import randomize_adapter

    base = tiny()
    base_sd = {k: v.clone() for k, v in base.state_dict().items()}
    pm = get_peft_model(copy.deepcopy(base), AdaLoraConfig(init_r=6, target_r=2, total_step=10, lora_alpha=4,
                                                           target_modules=["lin0", "lin1"]))
    randomize_adapter(pm, 3, 0.1)
    keep = {"lin0": [True, False, True, False, False, True], "lin1": [False] * 6}
    with torch.no_grad():
        for name, mask in keep.items():
            E = getattr(pm.base_model.model, name).lora_E["default"]
            E[~torch.tensor(mask)] = 0.0
    pm.peft_config["default"].rank_pattern = {f"{n}.lora_E": m for n, m in keep.items()}
    pm.save_pretrained(str(tmp_path))
    merged_sd = pm.merge_and_unload().state_dict()
    ds = load(tmp_path)
    assert ds["lin0"].low_rank[0].rank == 3 and ds["lin0"].meta["init_r"] == 6
    assert ds["lin1"].low_rank[0].rank == 0 and ds["lin1"].meta["r"] == 0
    for name in keep:
        assert torch.allclose(ds[name].dense(torch.float64), expected_delta(base_sd, merged_sd, name), atol=TOL)
