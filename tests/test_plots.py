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
