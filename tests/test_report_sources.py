"""`bench report A B ...`: several output folders and `bench export` files reported as one
(another machine's or person's results beside yours)."""

import shutil

import pytest

from tests.conftest import TINY


def _run(run_cli, miniroot, out, methods, seeds="1,2"):
    code, _, err = run_cli("run", "--backbone", TINY, "--pretrained", "none", "--quiet",
                           "--data-root", miniroot, "--datasets", "eurosat", "--methods",
                           methods, "--shots", "1", "--seeds", seeds, "--output", out)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def two(miniroot, tmp_path_factory):
    from bench.cli import main

    base = tmp_path_factory.mktemp("sources")
    outs = []
    for name, methods in (("a", "zero_shot,linear_probe"), ("b", "clip_adapter_visual")):
        out = base / name
        assert main(["run", "--backbone", TINY, "--pretrained", "none", "--quiet",
                     "--data-root", str(miniroot), "--datasets", "eurosat", "--methods",
                     methods, "--shots", "1", "--seeds", "1,2", "--output", str(out)]) == 0
        outs.append(out)
    both = base / "both"  # the same sweep run in one folder
    assert main(["run", "--backbone", TINY, "--pretrained", "none", "--quiet", "--data-root",
                 str(miniroot), "--datasets", "eurosat", "--methods",
                 "zero_shot,linear_probe,clip_adapter_visual", "--shots", "1", "--seeds",
                 "1,2", "--output", str(both)]) == 0
    return outs[0], outs[1], both


def _csv(run_cli, *args):
    code, out, err = run_cli("report", *args, "--format", "csv")
    assert code == 0, err
    return out, err


def test_two_folders_report_as_the_one_folder_of_the_same_sweep(two, run_cli):
    a, b, both = two
    together, _ = _csv(run_cli, a, b)
    alone, _ = _csv(run_cli, both)
    assert together == alone
    assert "clip_adapter_visual" in together and "linear_probe" in together


def test_an_export_file_reports_as_its_folder(two, run_cli, tmp_path):
    a, b, both = two
    export = tmp_path / "a.jsonl"
    code, _, err = run_cli("export", a, export)
    assert code == 0, err
    from_export, _ = _csv(run_cli, export, b)
    assert from_export == _csv(run_cli, a, b)[0]
    code, text, err = run_cli("report", export, b, "--significance", "bootstrap", "--color",
                              "never")  # the export's predictions, unpacked, are read
    assert code == 0, err
    code, direct, _ = run_cli("report", a, b, "--significance", "bootstrap", "--color", "never")
    assert code == 0 and text == direct and "bootstrap" in text


def test_a_cell_in_two_sources_counts_once_with_a_note(two, run_cli, tmp_path):
    a, b, _ = two
    copy = tmp_path / "copy"
    shutil.copytree(a, copy)
    twice, err = _csv(run_cli, a, copy, b)
    assert twice == _csv(run_cli, a, b)[0]
    assert "repeat a cell of another source" in err and "other bits" not in err


def test_a_missing_source_is_one_line(two, run_cli, tmp_path):
    a, _, _ = two
    code, _, err = run_cli("report", a, tmp_path / "nothing")
    assert code == 2 and "no results in" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_the_api_reads_several_sources(two):
    import bench

    a, b, both = two
    frame = bench.summary([a, b])
    assert frame.equals(bench.summary(both))
    assert len(bench.cells([a, b])) == len(bench.cells(both))
