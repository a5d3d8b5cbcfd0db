"""Per-image prediction files (results/predictions.py): round trip, damage detected."""

import numpy as np
import pytest
import torch

from results import predictions as P


def _evals(seed=0, n=50, classes=12):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    return {"demo_digits": (logits, labels)}


def _record(evals):
    (logits, labels), = evals.values()
    correct = (logits.argmax(1) == labels).float()
    per_class = [correct[labels == c].mean().item() for c in labels.unique()]
    return {"dataset": "demo_digits",
            "metrics": {"top1": round(100 * correct.mean().item(), 6),
                        "mean_per_class": round(100 * float(np.mean(per_class)), 6),
                        "n_test": len(labels)}}


@pytest.mark.parametrize("option", ["top5", "full16", "full32", "none"])
def test_round_trip_and_accuracy(tmp_path, option):
    evals = _evals()
    rec_path = tmp_path / "k1-s1-abc.json"
    block = P.write_predictions(P.predictions_path(rec_path), evals, logits=option)
    assert block["file"] == "k1-s1-abc.pred.npz" and block["bytes"] > 0
    got = P.read_predictions(rec_path, block)["demo_digits"]
    logits, labels = evals["demo_digits"]
    assert np.array_equal(got.pred, logits.argmax(1).numpy())
    assert np.array_equal(got.labels, labels.numpy())
    assert P.check_record(_record(evals), {"demo_digits": got}) == []
    if option == "top5":
        top = torch.topk(logits, 5).indices.numpy()
        assert np.array_equal(got.topk_indices, top)
        assert np.array_equal(got.topk_correct(5), (top == labels.numpy()[:, None]).any(1))


def test_same_predictions_same_bytes(tmp_path):
    a = P.write_predictions(tmp_path / "a.pred.npz", _evals(1))
    b = P.write_predictions(tmp_path / "b.pred.npz", _evals(1))
    assert (tmp_path / "a.pred.npz").read_bytes() == (tmp_path / "b.pred.npz").read_bytes()
    assert a["sha256"] == b["sha256"]


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[:-40]))
    elif how == "flipped":
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "missing":
        path.unlink()


@pytest.mark.parametrize("how,words", [("truncated", "truncated"), ("flipped", "damaged"),
                                       ("missing", "missing")])
def test_damaged_file_is_one_clear_error(tmp_path, how, words):
    rec_path = tmp_path / "k1-s1-abc.json"
    path = P.predictions_path(rec_path)
    block = P.write_predictions(path, _evals(), logits="full32")
    _damage(path, how)
    with pytest.raises(P.PredictionsError) as e:
        P.read_predictions(rec_path, block)
    msg = str(e.value)
    assert "\n" not in msg and words in msg and str(path) in msg


def test_another_cells_file_is_refused(tmp_path):
    rec_path = tmp_path / "k1-s1-abc.json"
    path = P.predictions_path(rec_path)
    block = P.write_predictions(path, _evals(1))
    other = P.write_predictions(tmp_path / "x.pred.npz", _evals(2))
    path.write_bytes((tmp_path / "x.pred.npz").read_bytes())
    with pytest.raises(P.PredictionsError, match="sha256"):
        P.read_predictions(rec_path, {**block, "bytes": other["bytes"]})


def test_record_contradicting_its_file_is_reported(tmp_path):
    evals = _evals()
    rec_path = tmp_path / "k1-s1-abc.json"
    block = P.write_predictions(P.predictions_path(rec_path), evals)
    rec = _record(evals)
    rec["metrics"]["top1"] += 1.0
    problems = P.check_record(rec, P.read_predictions(rec_path, block))
    assert problems and "top1" in problems[0]


def test_no_block_is_one_clear_error(tmp_path):
    with pytest.raises(P.PredictionsError, match="no predictions block"):
        P.read_predictions(tmp_path / "r.json", None)
