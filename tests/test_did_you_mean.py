"""The one did-you-mean helper every unknown-name message uses (bench.base.errors.did_you_mean)."""

from bench.base.errors import did_you_mean


def test_closest_name():
    assert did_you_mean("epoch", ["epochs", "lr", "alpha"]) == " Did you mean 'epochs'?"


def test_nothing_close_gives_empty_string():
    assert did_you_mean("zzzz", ["epochs", "lr"]) == ""


def test_several_joined_with_or():
    # closest first: 'coop' shares 3 of 7 letters' worth with 'cop', 'coopx' 3 of 8
    assert did_you_mean("cop", ["zero_shot", "coopx", "coop"], n=2, cutoff=0.5) == \
        " Did you mean 'coop' or 'coopx'?"


def test_dash_and_case_spelling_first():
    # 'gpus-per-job' is far from 'gpus_per_job' for difflib's ratio cutoff on short keys,
    # but it is plainly the same name written with dashes
    assert did_you_mean("GPUS-per-job", ["mem", "gpus_per_job"], prefix="; did you mean") == \
        "; did you mean 'gpus_per_job'?"


def test_known_may_be_a_dict_or_set():
    assert did_you_mean("lrr", {"lr": 1, "wd": 2}) == " Did you mean 'lr'?"
    assert did_you_mean("lrr", {"lr", "wd"}) == " Did you mean 'lr'?"
