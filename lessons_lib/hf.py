"""GPT-2 weights in Hugging Face format, mapped onto ``lessons_lib.GPT`` (lesson 04).

OpenAI's checkpoint stores its linear layers as ``Conv1D``, whose weight is ``(in, out)``;
``nn.Linear`` stores ``(out, in)``. Those four matrices per block are transposed on the way in.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from .assets import OFFLINE_ENV, AssetUnavailableError, offline
from .model import GPT, GPTConfig
from .utils import UserError

OPENAI_SIZES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh")


def _load_hf_model(name_or_path: str):
    from transformers import GPT2LMHeadModel

    if Path(name_or_path).is_dir():
        try:
            return GPT2LMHeadModel.from_pretrained(name_or_path)
        except Exception as exc:  # no config.json or weights (OSError), damaged weights (torch, safetensors)
            reason = (str(exc).splitlines() or [type(exc).__name__])[0].split(". ")[0].rstrip(".")
            if "weights_only" in str(exc):  # torch's advice, weights_only=False, would run the file's code
                reason = "its weights file holds pickled Python objects, which could run code"
            what = f"{name_or_path} is not a Hugging Face model folder that loads"
            raise UserError(f"{what}: {reason}.") from exc
    if name_or_path not in OPENAI_SIZES:
        raise UserError(
            f"Unknown pretrained model {name_or_path!r}: give one of {', '.join(OPENAI_SIZES)} "
            "or the path of a local folder saved with save_pretrained (config.json + weights)."
        )
    local = "pass the path of a folder that holds a save_pretrained copy"
    if offline():  # only the Hugging Face cache of an earlier download, without waiting for the hub
        try:
            return GPT2LMHeadModel.from_pretrained(name_or_path, local_files_only=True)
        except OSError as exc:
            raise AssetUnavailableError(
                f"{OFFLINE_ENV} is set and {name_or_path!r} is not in the Hugging Face cache, so it was "
                f"not downloaded. Run once with internet access (without {OFFLINE_ENV}), or {local}."
            ) from exc
    try:
        return GPT2LMHeadModel.from_pretrained(name_or_path)
    except OSError as exc:
        raise AssetUnavailableError(
            f"Could not fetch {name_or_path!r} from the Hugging Face hub ({exc}). With internet "
            f"access it downloads once into the Hugging Face cache; offline, {local}."
        ) from exc


def config_from_hf(hf_config) -> GPTConfig:
    act = getattr(hf_config, "activation_function", "gelu_new")
    if act not in TANH_GELUS:
        raise UserError(f"activation_function={act!r} is not GPT-2's tanh GELU; cannot load it exactly.")
    return GPTConfig(
        block_size=hf_config.n_positions,
        vocab_size=hf_config.vocab_size,
        n_layer=hf_config.n_layer,
        n_head=hf_config.n_head,
        n_embd=hf_config.n_embd,
    )


def _matching_hf_state(hf, ours: dict) -> dict:
    """The HF model's parameters (without its causal-mask buffers), checked to have our names."""
    sd_hf = {k: v for k, v in hf.state_dict().items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    if set(ours) != set(sd_hf):
        raise UserError(
            f"Parameter names differ from GPT-2's: missing {sorted(set(ours) - set(sd_hf))[:5]}, "
            f"unexpected {sorted(set(sd_hf) - set(ours))[:5]}."
        )
    return sd_hf


def load_hf_gpt2(name_or_path: str) -> GPT:
    """A ``GPT`` holding the weights of a Hugging Face ``GPT2LMHeadModel``."""
    hf = _load_hf_model(name_or_path)
    config = config_from_hf(hf.config)
    model = GPT(config)
    sd = model.state_dict()
    sd_hf = _matching_hf_state(hf, sd)
    with torch.no_grad():
        for k, w in sd_hf.items():
            if k.endswith(CONV1D_WEIGHTS):
                w = w.t()
            if w.shape != sd[k].shape:
                raise UserError(f"{k}: shape {tuple(w.shape)} does not fit {tuple(sd[k].shape)}.")
            sd[k].copy_(w)
    return model


def export_hf_gpt2(model: GPT, out_dir: str | Path) -> Path:
    """Save ``model`` as a Hugging Face GPT-2 folder (config.json + model.safetensors).

    The reverse of ``load_hf_gpt2``: the four ``Conv1D`` matrices per block are transposed back,
    and a padded vocabulary (``vocab_multiple > 1``) loses its padding rows, which no token uses.
    The files are built next to ``out_dir`` and moved in, config.json last, so a crash never
    leaves a config that points at missing or half-written weights.
    """
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    from .tokenizer import EOT_TOKEN

    c = model.config
    eot = EOT_TOKEN if c.vocab_size > EOT_TOKEN else None  # a toy vocabulary has no <|endoftext|>
    config = GPT2Config(
        n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head,
        vocab_size=c.vocab_size, activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, tie_word_embeddings=True, bos_token_id=eot, eos_token_id=eot,
    )  # fmt: skip
    hf = GPT2LMHeadModel(config).eval().to(next(model.parameters()).dtype)  # lossless: the model's dtype
    ours = model.state_dict()
    sd = _matching_hf_state(hf, ours)
    with torch.no_grad():
        for k, w in ours.items():
            if k.endswith(CONV1D_WEIGHTS):
                w = w.t()
            elif k in ("transformer.wte.weight", "lm_head.weight"):
                w = w[: c.vocab_size]  # drop the padding rows
            sd[k].copy_(w)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        hf.save_pretrained(tmp, safe_serialization=True)
        for f in sorted(tmp.iterdir(), key=lambda f: f.name == "config.json"):  # config.json last
            os.replace(f, out_dir / f.name)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
