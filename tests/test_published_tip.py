"""The Tip-Adapter per-dataset rows of configs/published/ agree with their 11-dataset means."""

import pytest

from results.published import load_published


@pytest.mark.parametrize("method", ["tip_adapter", "tip_adapter_f"])
def test_per_dataset_rows_average_to_the_published_mean(method):
    rows = [r for r in load_published() if r.method == method]
    for k in (1, 2, 4, 8, 16):
        per = {r.dataset: r.top1 for r in rows if r.shots == k and r.dataset != "average"}
        assert len(per) == 11
        mean = [r.top1 for r in rows if r.shots == k and r.dataset == "average"]
        assert mean and sum(per.values()) / 11 == pytest.approx(mean[0], abs=0.006)
