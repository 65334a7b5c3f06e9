# HARPE for Hugging Face transformers (v5), written next to a checkpoint by `harpe export --hf-remote-code`:
# AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True) runs it with one RoPE base per head.
# harpe fills in the two double-braced names below from its template. Shapes: B batch, T tokens, H query heads,
# K key/value heads, N heads that own a base (K at "kv" granularity, H at "query"), D head dim, R rotated dims.
import importlib
import math

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

HARPE_ARCHITECTURE = "{{architecture}}"
HARPE_VERSION = "{{version}}"
GRANULARITIES = ("kv", "query")
CLASS_PREFIXES = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}

_PREFIX = CLASS_PREFIXES[HARPE_ARCHITECTURE]
_configuration = importlib.import_module(
    f"transformers.models.{HARPE_ARCHITECTURE}.configuration_{HARPE_ARCHITECTURE}"
)
_modeling = importlib.import_module(f"transformers.models.{HARPE_ARCHITECTURE}.modeling_{HARPE_ARCHITECTURE}")


def harpe_inverse_frequencies(bases, rotary_dim):
    """inv_freq[n][i] = bases[n] ** (-2i / R) for i < R/2, in float64 (HARPE.md; lib/harpe/rope.ts)."""
    return [[math.pow(base, -2 * i / rotary_dim) for i in range(rotary_dim // 2)] for base in bases]


def harpe_rope_settings(config):
    """The HARPE fields of `config.rope_parameters`, checked against the head counts.

    Returns (bases, granularity, theta, rotary_dim); raises ValueError naming the field otherwise.
    """
    params = getattr(config, "rope_parameters", None) or {}
    if params.get("rope_type") != "harpe":
        raise ValueError(
            f'rope_parameters.rope_type is {params.get("rope_type")!r}, expected "harpe": this model code only '
            "runs HARPE checkpoints written by `harpe convert` / `harpe export`"
        )
    granularity = params.get("granularity")
    if granularity not in GRANULARITIES:
        raise ValueError(f"rope_parameters.granularity is {granularity!r}, expected one of {GRANULARITIES}")
    heads = config.num_key_value_heads if granularity == "kv" else config.num_attention_heads
    bases = params.get("head_bases")
    if not isinstance(bases, list) or len(bases) != heads:
        raise ValueError(
            f"rope_parameters.head_bases must list {heads} bases (one per "
            f'{"key/value" if granularity == "kv" else "query"} head), got {bases!r}'
        )
    if not all(isinstance(b, (int, float)) and b > 1 for b in bases):
        raise ValueError(f"rope_parameters.head_bases must all be numbers > 1, got {bases!r}")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    factor = params.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", None) or 1.0)
    return [float(b) for b in bases], granularity, float(params["rope_theta"]), int(head_dim * factor)


class HarpeConfig(getattr(_configuration, f"{_PREFIX}Config")):
    """The architecture's config with a model_type of its own, so plain loading asks for remote code."""

    model_type = f"harpe_{HARPE_ARCHITECTURE}"

    def _validate_harpe_rope_parameters(self, rope_parameters, ignore_keys=None):
        missing = {"rope_type", "rope_theta", "head_bases", "granularity"} - set(rope_parameters)
        if missing:
            raise ValueError(f"rope_parameters of a HARPE config lacks {sorted(missing)}")


class HarpeRope(nn.Module):
    """Per-head rotary tables: forward(x, position_ids [B, T]) -> cos, sin [B, N, T, R] in x's dtype.

    No buffers: the tables are computed from the bases on every call, in float64 where the device has it.
    """

    def __init__(self, bases, rotary_dim):
        super().__init__()
        self.bases = bases
        self.rotary_dim = rotary_dim

    @torch.no_grad()
    def forward(self, x, position_ids, **_):
        wide = torch.float32 if x.device.type == "mps" else torch.float64
        inv_freq = torch.tensor(harpe_inverse_frequencies(self.bases, self.rotary_dim), dtype=wide, device=x.device)
        angles = position_ids.to(wide)[:, None, :, None] * inv_freq[None, :, None, :]  # [B, N, T, R/2]
        table = torch.cat((angles, angles), dim=-1)  # [B, N, T, R]
        return table.cos().to(x.dtype), table.sin().to(x.dtype)


def harpe_rotate(x, cos, sin):
    """Rotates the first R dims of x [B, N, T, D] per head (HF rotate_half layout); dims >= R pass through."""
    r = cos.shape[-1]
    x_rot, x_pass = x[..., :r], x[..., r:]
    half = torch.cat((-x_rot[..., r // 2 :], x_rot[..., : r // 2]), dim=-1)
    return torch.cat((x_rot * cos + half * sin, x_pass), dim=-1)


class HarpeAttention(getattr(_modeling, f"{_PREFIX}Attention")):
    """The architecture's attention (same weights and names) with HARPE's per-head rotation.

    At "query" granularity each query head rotates the shared key with its own base, so keys and
    values are expanded to H heads before the cache and the attention kernel (num_key_value_groups 1).
    """

    def forward(self, hidden_states, position_embeddings=None, attention_mask=None, past_key_values=None,
                cache_position=None, **kwargs):
        if position_embeddings is None:
            raise ValueError("HARPE attention needs the per-head (cos, sin) tables of HarpeRope")
        cos, sin = position_embeddings  # [B, N, T, R]
        if past_key_values is None:  # the name older transformers versions use
            past_key_values = kwargs.pop("past_key_value", None)
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        query = self.q_proj(hidden_states).view(shape)  # [B, T, H, D]
        key = self.k_proj(hidden_states).view(shape)  # [B, T, K, D]
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)  # [B, K, T, D]
        if hasattr(self, "q_norm"):
            query, key = self.q_norm(query), self.k_norm(key)
        query, key = query.transpose(1, 2), key.transpose(1, 2)
        group = query.shape[1] // key.shape[1]
        if cos.shape[1] == key.shape[1]:
            key = harpe_rotate(key, cos, sin)
            cos, sin = cos.repeat_interleave(group, dim=1), sin.repeat_interleave(group, dim=1)
        else:
            key = harpe_rotate(key.repeat_interleave(group, dim=1), cos, sin)
            value = value.repeat_interleave(group, dim=1)
        query = harpe_rotate(query, cos, sin)

        if past_key_values is not None:
            extra = () if cache_position is None else ({"cache_position": cache_position},)
            key, value = past_key_values.update(key, value, self.layer_idx, *extra)

        attend = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, _modeling.eager_attention_forward)
        window = self.sliding_window if hasattr(self, "sliding_window") else getattr(self.config, "sliding_window", None)
        output, weights = attend(
            self, query, key, value, attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling, sliding_window=window, **kwargs,
        )
        output = output.reshape(*hidden_states.shape[:-1], -1).contiguous()
        return self.o_proj(output), weights


class HarpeForCausalLM(getattr(_modeling, f"{_PREFIX}ForCausalLM")):
    """The architecture's causal LM with HarpeRope and HarpeAttention in place of single-base RoPE."""

    config_class = HarpeConfig

    def __init__(self, config):
        bases, granularity, theta, rotary_dim = harpe_rope_settings(config)
        # The architecture's own rotary module knows no "harpe" type: build it with plain RoPE, then replace it.
        harpe_parameters = config.rope_parameters
        config.rope_parameters = {"rope_type": "default", "rope_theta": theta}
        try:
            super().__init__(config)
        finally:
            config.rope_parameters = harpe_parameters
        self.config.rope_parameters = harpe_parameters
        self.model.rotary_emb = HarpeRope(bases, rotary_dim)
        for layer in self.model.layers:
            layer.self_attn.__class__ = HarpeAttention
            if granularity == "query":
                layer.self_attn.num_key_value_groups = 1
