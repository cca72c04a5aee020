"""The pyioso command line: formats, paper comparison, plots and one-line errors."""

import csv
import io
import json
import os

import pytest

from pyioso.cli import main as cli


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_layers_table(capsys):
    code, out, err = run(capsys, "layers", "--net", "resnet18")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == 2 + 21
    assert "layer1.0.conv1" in out and "224x224x3" in out and "112x112x64" in out


def test_layers_json(capsys):
    code, out, _ = run(capsys, "layers", "--net", "mobilenet_v2", "--format", "json")
    document = json.loads(out)
    assert code == 0 and document["net"] == "mobilenet_v2" and document["size"] == 224
    assert len(document["layers"]) == 53
    assert document["layers"][1]["kind"] == "depthwise" and document["layers"][1]["groups"] == 32


def test_layers_csv(capsys):
    code, out, _ = run(capsys, "layers", "--net", "resnet50", "--size", "112", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 54
    assert out.splitlines()[0].startswith("index,path,kind,h_in,w_in,c_in,c_out")
    assert rows[0]["path"] == "conv1" and rows[0]["h_out"] == "56"


def test_layers_aliases(capsys):
    code, out, _ = run(capsys, "layers", "--aliases", "--format", "json")
    records = {r["name"]: r for r in json.loads(out)["layers"]}
    assert code == 0 and len(records) == 8
    l2 = records["resnet50_l2"]
    assert (l2["net"], l2["path"], l2["h_in"], l2["c_in"], l2["c_out"], l2["kh"]) == (
        "resnet50", "layer2.1.conv2", 28, 128, 128, 3)
    code, out, _ = run(capsys, "layers", "--aliases")
    assert code == 0 and "resnet50:layer3.1.conv2" in out and "14x14x256" in out


@pytest.mark.parametrize("name", ["resnet50_l3", "resnet50:layer3.1.conv2"])
def test_layers_one_layer(capsys, name):
    code, out, _ = run(capsys, "layers", "--layer", name, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 1
    assert (rows[0]["name"], rows[0]["path"], rows[0]["h_in"], rows[0]["c_in"]) == (name, "layer3.1.conv2", "14", "256")


def test_cost_table_shows_paper_row(capsys):
    code, out, _ = run(capsys, "cost", "--net", "resnet18")
    assert code == 0
    assert "3,625,661,976" in out and "9,938,848" in out  # our totals
    assert "paper Table 5 (ResNet-18)" in out and "3.005" in out and "0.20%" in out
    assert "231,110,656" in out and "401,408" in out  # Table 12 row 4 = layer2.0.conv2


def test_cost_json(capsys):
    code, out, _ = run(capsys, "cost", "--net", "mobilenet_v2", "--format", "json")
    document = json.loads(out)
    assert code == 0 and document["groups"] == 3 and len(document["layers"]) == 53
    totals = document["totals"]
    assert totals["ops"] == sum(row["ops"] for row in document["layers"])
    assert totals["total_ops"] == totals["ops"] + totals["isg_ops"]
    assert document["paper"]["giga_ops"] == 0.338
    depthwise = [row for row in document["layers"] if row["kind"] == "depthwise"]
    assert depthwise and all(row["isg_ops"] == 0 for row in depthwise)


def test_cost_json_no_paper_row(capsys):
    _, out, _ = run(capsys, "cost", "--net", "mnasnet1_0", "--format", "json")
    assert json.loads(out)["paper"] is None


def test_cost_csv_has_header_and_total(capsys):
    code, out, _ = run(capsys, "cost", "--net", "resnet18", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and out.startswith("index,path,kind,oc,w,h,ic,fx,fy,outputs")
    assert len(rows) == 22 and rows[-1]["path"] == "total"
    assert int(rows[-1]["ops"]) == sum(int(r["ops"]) for r in rows[:-1])


def test_cost_groups_one(capsys):
    _, out, _ = run(capsys, "cost", "--net", "resnet18", "--groups", "1", "--format", "json")
    document = json.loads(out)
    assert document["totals"]["isg_ops"] == 0 and all(r["isg_ops"] == 0 for r in document["layers"])


def test_cost_all(capsys):
    code, out, _ = run(capsys, "cost", "--net", "all")
    assert code == 0
    for name in ("resnet18", "regnet_x_600mf", "mnasnet2_0", "MnasNet-2.0", "RegNet-3.2GF", "4.442", "4.03%"):
        assert name in out
    code, out, _ = run(capsys, "cost", "--net", "all", "--format", "csv")
    rows = {r["net"]: r for r in csv.DictReader(io.StringIO(out))}
    assert code == 0 and len(rows) == 7
    assert rows["mnasnet2_0"]["paper_giga_ops"] == "2.217" and rows["mnasnet1_0"]["paper_label"] == ""
    _, out, _ = run(capsys, "cost", "--net", "all", "--format", "json")
    assert [n["net"] for n in json.loads(out)["networks"]][:2] == ["resnet18", "resnet50"]


@pytest.mark.parametrize("net", ["resnet18", "all"])
def test_cost_plot(capsys, tmp_path, net):
    target = tmp_path / "isg.png"
    code, _, err = run(capsys, "cost", "--net", net, "--plot", str(target))
    assert code == 0 and err == ""
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["isg.png"]  # no temp file left behind


@pytest.mark.parametrize("argv, fragment", [
    (["cost", "--net", "vgg16"], "unknown network 'vgg16'"),
    (["layers", "--net", "nonet"], "unknown network 'nonet'"),
    (["layers", "--layer", "resnet50_l9"], "unknown layer 'resnet50_l9'"),
    (["layers", "--layer", "resnet18:layer9.0.conv1"], "has no conv/FC layer"),
    (["cost", "--net", "resnet18", "--groups", "0"], "--groups"),
    (["layers", "--net", "resnet18", "--size", "0"], "--size"),
    (["cost", "--net", "resnet18", "--plot", "chart.jpg"], ".png"),
    (["cost", "--net", "resnet18", "--plot", "/no/such/dir/chart.png"], "does not exist"),
])
def test_bad_input_one_line_exit_2(capsys, argv, fragment):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("pyioso: error: ") and fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("argv, fragment", [
    (["calibrate", "--net", "resnet18", "--size", "0"], "argument --size: 0 is out of range: use 1 or more"),
    (["calibrate", "--net", "resnet18", "--size", "-5"], "argument --size: -5 is out of range"),
    (["calibrate", "--net", "resnet18", "--images", "0"], "argument --images: 0 is out of range"),
    (["calibrate", "--net", "resnet18", "--iters", "-1"], "argument --iters: -1 is out of range: use 0 or more"),
    (["calibrate", "--net", "resnet18", "--batch", "x"], "argument --batch: 'x' is not an integer"),
    (["eval", "--run", "RUN", "--images", "0"], "argument --images: 0 is out of range"),
    (["train", "--net", "resnet18", "--epochs", "0"], "argument --epochs: 0 is out of range"),
    (["calibrate", "--net", "resnet18"], "the following arguments are required: --weights, --out"),
    (["nosuch"], "invalid choice: 'nosuch'"),
])
def test_bad_command_lines_are_refused_while_parsing(capsys, tmp_path, argv, fragment):
    """Issue 26: a bad number is refused before any work or file (--size 0 once ran at 32 px,
    --size -5 ended in a torch error), in the one-line form of every other bad input."""
    out = tmp_path / "out"
    argv = [a if a != "RUN" else str(tmp_path / "run") for a in argv]
    if argv[0] == "calibrate" and "required" not in fragment:
        argv += ["--out", str(out)]
    code, stdout, err = run(capsys, *argv)
    assert code == 2 and stdout == "" and not out.exists()
    assert err.startswith("pyioso: error: ") and fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err and "--help" in err


def test_help_has_examples(capsys):
    for command in ("layers", "cost"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        out = capsys.readouterr().out
        assert exit_info.value.code == 0 and "examples:" in out and "mnasnet2_0" in out



def test_ctrl_c_is_one_line_and_exit_130(capsys, monkeypatch):
    """Issue 26: Ctrl-C printed a KeyboardInterrupt traceback."""
    import argparse

    def interrupted(args):
        raise KeyboardInterrupt("calibration interrupted; every finished block is saved in x")

    class Parser:
        def parse_args(self, argv):
            return argparse.Namespace(run=interrupted)
    monkeypatch.setattr(cli, "build_parser", Parser)
    assert cli.main(["calibrate"]) == 130
    assert capsys.readouterr().err == "pyioso: calibration interrupted; every finished block is saved in x\n"
