"""One int-list parser (bench.sweep.parse_int_list) behind `bench run --shots/--seeds` and
`bench report --shots`: the same bad input gets the same message from both."""

import pytest

from bench.cli import main
from bench.reporting import parse_shots
from bench.base.errors import UsageError
from bench.sweep import parse_int_list
from results.store import ResultStore
from tests.test_report import record


@pytest.mark.parametrize("value, expected", [
    ("1,2,4", [1, 2, 4]), (" 8 , 1 ", [8, 1]), (4, [4]), ([1, 2], [1, 2]), ("16", [16]),
])
def test_parses(value, expected):
    assert parse_int_list(value, "--shots") == expected


@pytest.mark.parametrize("value, needle", [
    ("", "--shots is empty"), ("1,,2", "item 2 is empty"), ("1,x", "'x' is not an integer"),
    ("1.5", "'1.5' is not an integer"), ("0", "0 must be >= 1"), ("-2", "-2 must be >= 1"),
    ("2,2", "2 is listed twice"), ([True], "not an integer"), ([2.0], "not an integer"),
])
def test_rejects(value, needle):
    with pytest.raises(UsageError) as err:
        parse_int_list(value, "--shots")
    assert str(err.value).startswith("--shots") and needle in str(err.value)


def test_report_filter_is_sorted_and_none_means_all():
    assert parse_shots("16,1,4") == [1, 4, 16]
    assert parse_shots(None) is None


@pytest.mark.parametrize("bad", ["1,,2", "x", "0", "2,2"])
def test_report_and_run_say_the_same(tmp_path, capsys, bad):
    with pytest.raises(UsageError) as run_err:
        parse_int_list(bad, "--shots")
    ResultStore(tmp_path / "out").write(record("zero_shot", "eurosat", 1, 1))
    assert main(["report", str(tmp_path / "out"), "--shots", bad]) == 2
    err = capsys.readouterr().err
    assert str(run_err.value) in err and "Traceback" not in err
