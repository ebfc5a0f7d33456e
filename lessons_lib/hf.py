"""GPT-2 weights in Hugging Face format, mapped onto ``lessons_lib.GPT`` (lesson 04).

OpenAI's checkpoint stores its linear layers as ``Conv1D``, whose weight is ``(in, out)``;
``nn.Linear`` stores ``(out, in)``. Those four matrices per block are transposed on the way in.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .assets import AssetUnavailableError
from .model import GPT, GPTConfig

OPENAI_SIZES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh")


def _load_hf_model(name_or_path: str):
    from transformers import GPT2LMHeadModel

    if Path(name_or_path).is_dir():
        return GPT2LMHeadModel.from_pretrained(name_or_path)
    if name_or_path not in OPENAI_SIZES:
        raise ValueError(
            f"Unknown pretrained model {name_or_path!r}: give one of {', '.join(OPENAI_SIZES)} "
            "or the path of a local folder saved with save_pretrained (config.json + weights)."
        )
    try:
        return GPT2LMHeadModel.from_pretrained(name_or_path)
    except OSError as exc:
        raise AssetUnavailableError(
            f"Could not fetch {name_or_path!r} from the Hugging Face hub ({exc}). With internet "
            "access it downloads once into the Hugging Face cache; offline, pass the path of a "
            "folder that holds a save_pretrained copy."
        ) from exc


def config_from_hf(hf_config) -> GPTConfig:
    act = getattr(hf_config, "activation_function", "gelu_new")
    if act not in TANH_GELUS:
        raise ValueError(f"activation_function={act!r} is not GPT-2's tanh GELU; cannot load it exactly.")
    return GPTConfig(
        block_size=hf_config.n_positions,
        vocab_size=hf_config.vocab_size,
        n_layer=hf_config.n_layer,
        n_head=hf_config.n_head,
        n_embd=hf_config.n_embd,
    )


def load_hf_gpt2(name_or_path: str) -> GPT:
    """A ``GPT`` holding the weights of a Hugging Face ``GPT2LMHeadModel``."""
    hf = _load_hf_model(name_or_path)
    config = config_from_hf(hf.config)
    model = GPT(config)
    sd = model.state_dict()
    sd_hf = {k: v for k, v in hf.state_dict().items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    if set(sd) != set(sd_hf):
        raise ValueError(
            f"Parameter names differ from GPT-2's: missing {sorted(set(sd) - set(sd_hf))[:5]}, "
            f"unexpected {sorted(set(sd_hf) - set(sd))[:5]}."
        )
    with torch.no_grad():
        for k, w in sd_hf.items():
            if k.endswith(CONV1D_WEIGHTS):
                w = w.t()
            if w.shape != sd[k].shape:
                raise ValueError(f"{k}: shape {tuple(w.shape)} does not fit {tuple(sd[k].shape)}.")
            sd[k].copy_(w)
    return model
