"""Model catalog: names, aliases, errors, frozen configs, and the published DeepSeek-V3 config."""

from pathlib import Path

import pydantic
import pytest
import yaml

from workloads.models import ModelConfig, UnknownModelError, get_model, list_models

REF = yaml.safe_load((Path(__file__).parent / "data/reference/isca_accounting.yaml").read_text())

EXPECTED = ["deepseek-v3", "deepseek-v2", "deepseek-v2-lite", "llama-3.1-8b", "llama-3.1-70b",
            "llama-3.1-405b", "qwen-2.5-72b"]


def test_list_models_has_the_catalog():
    assert list_models() == EXPECTED


@pytest.mark.parametrize("name", ["deepseek-r1", "DeepSeek-R1", "  DEEPSEEK-V3 ", "deepseek-v3-671b"])
def test_aliases_and_case_insensitive(name):
    assert get_model(name).name == "deepseek-v3"


def test_get_model_passes_config_through():
    m = get_model("llama-3.1-8b")
    assert get_model(m) is m


def test_unknown_model_lists_names_and_suggests():
    with pytest.raises(UnknownModelError) as ei:
        get_model("deepseek-v4")
    msg = str(ei.value)
    assert isinstance(ei.value, LookupError)
    assert "did you mean 'deepseek-v3'" in msg
    for n in EXPECTED:
        assert n in msg
    assert "\n" not in msg


def test_configs_are_frozen_and_forbid_extra():
    m = get_model("deepseek-v3")
    with pytest.raises(pydantic.ValidationError):
        m.hidden_size = 1  # type: ignore[misc]
    data = m.model_dump()
    data["bogus"] = 1
    with pytest.raises(pydantic.ValidationError):
        ModelConfig.model_validate(data)


def test_every_model_has_a_source_url():
    for n in list_models():
        src = get_model(n).source
        assert src.url.startswith("https://"), n
        assert src.revision, n


def test_v3_matches_published_config():
    v = REF["v3_model_config"]["value"]
    m = get_model("deepseek-v3")
    a, e = m.attention, m.moe
    assert (m.num_layers, m.num_dense_layers, m.hidden_size, m.vocab_size) == (
        v["layers"], v["dense_layers"], v["hidden"], v["vocab"])
    assert (a.num_heads, a.qk_nope_head_dim, a.v_head_dim) == (v["heads"], v["head_dim"], v["v_head_dim"])
    assert (a.kv_lora_rank, a.q_lora_rank, a.qk_rope_head_dim) == (
        v["kv_lora_rank"], v["q_lora_rank"], v["rope_head_dim"])
    assert (e.num_routed_experts, e.num_shared_experts, e.top_k, e.intermediate_size) == (
        v["routed_experts"], v["shared_experts"], v["topk"], v["moe_inter_dim"])
    assert (m.dense_intermediate_size, e.n_group, e.topk_group, m.num_mtp_modules) == (
        v["dense_inter_dim"], v["expert_groups"], v["limited_groups"], v["mtp_depth"])
    assert (a.absorbed_qk_head_dim, a.absorbed_v_head_dim) == (576, 512)


def test_architecture_details():
    lite = get_model("deepseek-v2-lite")
    assert lite.attention.q_lora_rank is None
    assert lite.moe.n_group == 1
    v2 = get_model("deepseek-v2")
    assert (v2.moe.num_routed_experts, v2.moe.top_k, v2.moe.num_shared_experts) == (160, 6, 2)
    q = get_model("qwen-2.5-72b")
    assert q.attention.kind == "gqa" and q.attention.num_kv_heads == 8 and q.attention.qkv_bias
    for n in ("llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b"):
        m = get_model(n)
        assert not m.is_moe and m.attention.num_kv_heads == 8 and not m.attention.qkv_bias


def test_invalid_architecture_rejected():
    data = get_model("deepseek-v3").model_dump()
    data["moe"]["top_k"] = 300
    with pytest.raises(pydantic.ValidationError, match="top_k"):
        ModelConfig.model_validate(data)
