"""The plots written next to a calibration stay legible for layer-wise runs of deep networks."""

import warnings

import pytest

from pyioso.calib import plots


def _history(segments: int) -> list[dict]:
    return [{"stage": stage, "segment": f"features.{i}.conv.0", "curve": [(0, 2.0 + i), (50, 1.0 + i)],
             "loss_before": 2.0 + i, "loss_after": 1.0 + i}
            for stage in ("weights", "activations") for i in range(segments)]


@pytest.mark.parametrize("segments", [3, 53])      # block-wise resnet18 / layer-wise mobilenet_v2
def test_loss_plot_lays_out_any_number_of_segments(tmp_path, segments):
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # matplotlib warns when the layout collapses
        plots.losses(_history(segments), tmp_path / "losses.png")
    assert (tmp_path / "losses.png").stat().st_size > 10_000


def test_accuracy_far_under_float_sits_on_the_floor_with_its_value(tmp_path, monkeypatch):
    """A collapsed setting (rtn at 2 bits) must not squeeze the methods compared near float."""
    drawn = []
    monkeypatch.setattr(plots, "save_png", lambda fig, path: drawn.append(fig))

    def rec(method, top1):
        return {"net": "resnet18", "bits": "W2A4", "method": method, "float": 90.0, "fake_quant": top1}
    plots.accuracy_vs_bits([rec("rtn", 14.0), rec("brecq", 89.0), rec("brecq", 88.0)], ["resnet18"], ["W2A4"],
                           ("rtn", "brecq"), tmp_path / "bits.png")
    ax = drawn[0].axes[0]
    bottom, top = ax.get_ylim()
    assert 85.0 < bottom < 88.0 - 0.71 and top > 90.0        # brecq's mean minus its std is on the scale
    assert [t.get_text() for t in ax.texts] == ["14.0"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["rtn", "brecq", "float"]
