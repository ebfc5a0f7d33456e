import numpy as np
import pytest
import torch
from matplotlib.collections import QuadMesh

from lessons_lib.monitor import TrainingMonitor
from lessons_lib.optim import cosine_lr
from lessons_lib.viz import (
    attention_maps,
    plot_attention,
    plot_layer_stats,
    plot_logit_heatmap,
    plot_logit_waterfall,
    plot_losses,
    plot_lr_schedule,
    smooth,
)

pytestmark = pytest.mark.usefixtures("one_thread")

PNG = b"\x89PNG\r\n\x1a\n"
CHARS = "\n abcdefghijklmnopqrstuvwxyz.,!?"


class CharTokenizer:
    """Tiny vocabulary, so prompts fit a 100-token model."""

    def encode(self, text):
        return [CHARS.index(c) for c in text]

    def decode(self, ids):
        return "".join(CHARS[i] for i in ids)


def synthetic_monitor(steps, every=10, bins=20, logit_range=None):
    """Logits whose spread grows with the step, as in a real run."""
    monitor = TrainingMonitor(torch.nn.Linear(1, 1), every=every, bins=bins, logit_range=logit_range)
    g = torch.Generator().manual_seed(0)
    for step in range(0, steps * every, every):
        monitor.observe(step, torch.randn(4, 8, 50, generator=g) * (1 + step / every))
    return monitor


# --- the plots ---------------------------------------------------------------------------------


def test_logit_waterfall_draws_densities_on_shared_bins(tmp_path):
    monitor = synthetic_monitor(steps=5, bins=20)  # each record histogrammed over its own range
    fig = plot_logit_waterfall(monitor, path=tmp_path / "w.png")
    (ax,) = fig.axes
    assert ax.name == "3d"
    assert len(ax.lines) == 5 and len(ax.collections) == 5
    xs0 = ax.lines[0].get_data_3d()[0]
    for line, step in zip(ax.lines, [0, 10, 20, 30, 40], strict=True):
        xs, ys, zs = line.get_data_3d()
        assert len(xs) == 20 and set(ys) == {step}
        np.testing.assert_array_equal(xs, xs0)  # the same bins for every step
        assert (zs * (xs[1] - xs[0])).sum() == pytest.approx(1.0)  # a density: integrates to 1
    peaks = [line.get_data_3d()[2].max() for line in ax.lines]
    assert peaks[0] > 2 * peaks[-1]  # narrow early distribution stands tall, the wide late one low
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_zlabel()) == (
        "logit value",
        "step",
        "density (fraction per unit logit)",
    )
    assert ax.get_title()
    assert (tmp_path / "w.png").read_bytes()[:8] == PNG


def test_logit_waterfall_thins_long_histories_keeping_the_ends():
    fig = plot_logit_waterfall(synthetic_monitor(steps=50).state_dict(), max_lines=10)
    steps = [line.get_data_3d()[1][0] for line in fig.axes[0].lines]
    assert len(steps) == 10 and steps[0] == 0 and steps[-1] == 490


@pytest.mark.parametrize("log_scale", [True, False])
def test_logit_heatmap_holds_steps_by_bins(log_scale, tmp_path):
    monitor = synthetic_monitor(steps=6, bins=12, logit_range=(-30.0, 30.0))
    fig = plot_logit_heatmap(monitor, log_scale=log_scale, path=tmp_path / "h.png")
    assert len(fig.axes) == 2  # the map and its colour bar
    ax = fig.axes[0]
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    grid = np.ma.filled(mesh.get_array(), 0.0)
    assert grid.shape == (12, 6)  # logit bins x recorded steps
    counts = np.array(monitor.logits["counts"], dtype=float).T
    assert np.allclose(grid, counts / (monitor.positions * 50))  # shared range: no re-binning
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("step", "logit value")
    assert (tmp_path / "h.png").read_bytes()[:8] == PNG


def test_logit_heatmap_rebins_per_step_ranges_without_losing_mass():
    fig = plot_logit_heatmap(synthetic_monitor(steps=4, bins=16), bins=24, log_scale=False)
    (mesh,) = [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)]
    grid = np.asarray(mesh.get_array())
    assert grid.shape == (24, 4)
    assert np.allclose(grid.sum(axis=0), 1.0)


def test_plots_explain_an_empty_monitor():
    empty = TrainingMonitor(torch.nn.Linear(1, 1))
    with pytest.raises(ValueError, match="observe"):
        plot_logit_heatmap(empty)
    with pytest.raises(ValueError, match="record_layers=True"):
        plot_layer_stats(empty)


def test_plot_losses_and_smooth(tmp_path):
    history = {"step": list(range(30)), "train_loss": [5 - 0.1 * s for s in range(30)],
               "val_step": [0, 10, 20, 29], "val_loss": [5.0, 4.1, 3.2, 2.4]}  # fmt: skip
    fig = plot_losses(history, path=tmp_path / "sub" / "loss.png", window=5)
    ax = fig.axes[0]
    assert [len(line.get_xdata()) for line in ax.lines] == [30, 30, 4]
    assert ax.get_ylabel() == "cross-entropy loss"
    assert (tmp_path / "sub" / "loss.png").read_bytes()[:8] == PNG
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["loss.png"]  # no temporary left
    assert len(plot_losses({**history, "val_loss": []}).axes[0].lines) == 2
    assert smooth([1, 2, 3, 4], 2).tolist() == [1.0, 1.5, 2.5, 3.5]
    with pytest.raises(ValueError, match="window"):
        smooth([1, 2], 0)


def test_lr_schedule_from_a_function_or_a_list():
    fig = plot_lr_schedule(lambda s: cosine_lr(s, 6e-4, 6e-5, 10, 80), steps=100)
    (line,) = fig.axes[0].lines
    assert len(line.get_xdata()) == 100
    assert line.get_ydata()[9] == pytest.approx(6e-4) and line.get_ydata()[-1] == pytest.approx(6e-5)
    assert fig.axes[0].get_ylabel() == "learning rate"
    assert plot_lr_schedule([1e-3, 5e-4, 1e-4]).axes[0].lines[0].get_ydata().tolist() == [1e-3, 5e-4, 1e-4]
    with pytest.raises(ValueError, match="steps"):
        plot_lr_schedule(lambda s: 1e-3)


def test_attention_weights_are_the_ones_the_model_uses(tiny_gpt):
    model = tiny_gpt()
    tokens, weights = attention_maps(model, "to be, or not", tokenizer=CharTokenizer())
    assert tokens == list("to be, or not") and sorted(weights) == [0, 1]
    outputs = {}
    block = model.transformer.h[1]
    block.attn.register_forward_hook(lambda m, i, o: outputs.update(attn=o, x=i[0]))
    model.eval()
    with torch.no_grad():
        model(torch.tensor([CharTokenizer().encode("to be, or not")]))
        att = weights[1]  # (n_head, T, T)
        assert att.shape == (2, 13, 13)
        assert torch.allclose(att.sum(-1), torch.ones(2, 13))
        assert (att.triu(1) == 0).all()  # causal: nothing from the future
        v = block.attn.c_attn(outputs["x"]).split(16, dim=2)[2].view(1, 13, 2, 8).transpose(1, 2)
        y = (att[None] @ v).transpose(1, 2).reshape(1, 13, 16)
        assert torch.allclose(block.attn.c_proj(y), outputs["attn"], atol=1e-6)


def test_plot_attention_labels_every_map_with_the_tokens(tmp_path, tiny_gpt):
    model = tiny_gpt().train()
    fig = plot_attention(model, "hi\nyou", layers=[1], heads=[0, 1], tokenizer=CharTokenizer(),
                         path=tmp_path / "attn.png")  # fmt: skip
    maps = [ax for ax in fig.axes if ax.images]
    assert len(maps) == 2 and len(fig.axes) == 3  # two heads and a colour bar
    for ax, head in zip(maps, [0, 1], strict=True):
        labels = ["h", "i", "\\n", "y", "o", "u"]
        assert [t.get_text() for t in ax.get_xticklabels()] == labels
        assert [t.get_text() for t in ax.get_yticklabels()] == labels
        assert ax.images[0].get_array().shape == (6, 6)
        assert ax.get_title() == f"layer 1, head {head}"
    assert model.training  # put back the way it was
    assert (tmp_path / "attn.png").read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="layers 0 .. 1"):
        plot_attention(model, "hi", layers=[2], tokenizer=CharTokenizer())
    with pytest.raises(ValueError, match="heads 0 .. 1"):
        plot_attention(model, "hi", heads=[5], tokenizer=CharTokenizer())


def test_layer_stats_draw_one_line_per_layer(tmp_path, tiny_gpt, train_sgd):
    model = tiny_gpt()
    monitor = TrainingMonitor(model, every=2, record_layers=True)
    train_sgd(model, 7, monitor)
    fig = plot_layer_stats(monitor, path=tmp_path / "layers.png")
    assert [ax.get_ylabel() for ax in fig.axes] == ["activation mean", "activation std", "gradient norm"]
    for ax in fig.axes:
        assert len(ax.lines) == 2
        assert all(line.get_xdata().tolist() == [0, 2, 4, 6] for line in ax.lines)
    assert (tmp_path / "layers.png").read_bytes()[:8] == PNG
