"""bench/hardware: the cycle model's closed form, the synthesis flow on a 2x2 engine with a tiny
liberty library (the smoke version of `make report`), the page, and the refusals.

The model's equality with the RTL counter is checked where the RTL runs (sim/test_engine.py,
sim/test_net.py); here it meets the counts the RTL measured for the paper's layers.
"""

import json

import pytest

from bench.hardware import __main__ as cli, area, blocks, latency, liberty, page, timing, variants, yosys
from golden.errors import PyiosoError
from hw import cycles
from hw.geometry import Shape
from hw.host import Depths
from hw.params import EngineParams
from pyioso.models import zoo

SMALL = Depths(act=64, weight=64, acc=16, out=64, channels=16, tiles=4)


def _shape(alias: str) -> Shape:
    return latency.zoo_shape(zoo.resolve_layer(alias)[1])


# ---- cycle model


@pytest.mark.parametrize("alias, params, want, passes", [
    ("resnet50_l2", EngineParams(), 451_640, 1),            # measured on the RTL (README)
    ("resnet50_l2", EngineParams(isg=False), 451_640, 1),
    ("resnet50_l3", EngineParams(), 451_752, 3),
])
def test_model_meets_the_measured_layers(alias, params, want, passes):
    c = cycles.layer_cycles(_shape(alias), params)
    assert (c.cycles, c.passes, c.ideal) == (want, passes, 451_584)
    assert c.microseconds == want / 400 and 0.999 < c.utilization < 1


def test_datapath_depth_follows_the_units():
    """Array 31, IOSO 0, accumulator 1, table 1, BN 4, activation 1; +1 for the widening
    register with fewer lanes; the FP16 unit has 4 stages too."""
    assert cycles.datapath_depth(EngineParams()) == cycles.datapath_depth(EngineParams(isg=False)) == 38
    assert cycles.datapath_depth(EngineParams(lanes=8)) == 39
    assert cycles.datapath_depth(EngineParams(isg=False, requant="fp16")) == 38


def test_short_tiles_with_fewer_lanes_are_refused():
    fc = Shape(1, 1, 512, 1000, (1, 1), (1, 1), (0, 0))
    assert cycles.layer_cycles(fc, EngineParams()).cycles > 0
    with pytest.raises(PyiosoError, match=r"covers fewer lanes than columns only for tiles of at "
                                          r"least 32 pixels"):
        cycles.layer_cycles(fc, EngineParams(lanes=8))


def test_network_tables_cover_every_layer():
    doc = latency.network("resnet18", EngineParams())
    assert len(doc["layers"]) == len(zoo.layers("resnet18")) == doc["totals"]["layers"]
    assert doc["totals"]["cycles"] == sum(r["cycles"] for r in doc["layers"])
    assert doc["layers"][-1]["shape"] == "FC 512->1000"


# ---- synthesis flow, 2x2 smoke version


def _timing(pin: str, sense: str) -> str:
    values = 'cell_rise (scalar) { values ("0.1"); } cell_fall (scalar) { values ("0.1"); } ' \
             'rise_transition (scalar) { values ("0.05"); } fall_transition (scalar) { values ("0.05"); }'
    return f'timing () {{ related_pin : "{pin}"; {sense}; {values} }}'


def tiny_liberty() -> str:
    """A four-cell library (INV, NAND2, NOR2, DFF with scalar timing, which ABC needs): enough
    to map any logic, with areas 1, 2, 2, 6."""
    cells = [("BUF", 1, "A", "timing_sense : positive_unate"), ("INV", 1, "!A", "timing_sense : negative_unate"),
             ("NAND2", 2, "!(A&B)", "timing_sense : negative_unate"),
             ("NOR2", 2, "!(A|B)", "timing_sense : negative_unate")]
    text = ['library (tiny) { delay_model : table_lookup; time_unit : "1ns"; voltage_unit : "1V";',
            'current_unit : "1mA"; capacitive_load_unit (1, pf); pulling_resistance_unit : "1kohm";',
            *(f"{k}_threshold_pct_{e} : {v};" for k, v in (("input", 50), ("output", 50),
              ("slew_lower", 10), ("slew_upper", 90)) for e in ("rise", "fall"))]
    for name, size, function, sense in cells:
        pins = [p for p in "AB" if p in function]
        inputs = " ".join(f"pin ({p}) {{ direction : input; capacitance : 0.002; }}" for p in pins)
        timing = " ".join(_timing(p, sense) for p in pins)
        text.append(f'cell ({name}) {{ area : {size}; {inputs} pin (Y) {{ direction : output; '
                    f'function : "{function}"; {timing} }} }}')
    text.append('cell (DFF) { area : 6; ff (IQ, IQN) { clocked_on : "C"; next_state : "D"; } '
                'pin (C) { direction : input; clock : true; capacitance : 0.002; } '
                'pin (D) { direction : input; capacitance : 0.002; timing () { related_pin : "C"; '
                'timing_type : setup_rising; rise_constraint (scalar) { values ("0.05"); } '
                'fall_constraint (scalar) { values ("0.05"); } } } '
                f'pin (Q) {{ direction : output; function : "IQ"; '
                f'{_timing("C", "timing_type : rising_edge")} }} }}')
    return "\n".join(text) + "\n}\n"


# One network at 32 px: the 2x2 engine with 1 lane is outside the cycle model's residual adds,
# so the page names the refusal (test_whole_network covers the product build).
WHOLE = {"whole_networks": ("resnet18",), "whole_size": 32}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Every variant of a 2x2 engine with 1 post-processing lane (lane converters too: every block
    of the product, in 85 s here against 125 s for a 4x4 by `--durations`) and small scratchpads,
    mapped onto the tiny library: (area.json, latency.json, work dir)."""
    root = tmp_path_factory.mktemp("report")
    (root / "tiny.lib").write_text(tiny_liberty())
    work = root / "synth"
    libs = liberty.libraries(work, liberty=str(root / "tiny.lib"))
    engines = variants.engines(2, 2, 1)
    doc = area.area_report(engines, SMALL, libs, work, jobs=2, baseline=variants.BASELINE,
                           progress=False)
    lat = latency.latency_report(engines, with_rtl=False, progress=False, **WHOLE)
    return doc, lat, work, engines, libs


def test_every_variant_has_every_block(smoke):
    doc = smoke[0]
    assert list(doc["variants"]) == list(variants.VARIANTS)
    for v in doc["variants"].values():
        assert list(v["blocks"]) == [b.name for b in blocks.BLOCKS]
        for block in v["blocks"].values():
            assert set(block) == {"generic", "tiny"}
        assert v["total"]["tiny"]["area"] == pytest.approx(
            sum(b["tiny"]["area"] for b in v["blocks"].values()))


def test_variants_differ_where_they_should(smoke):
    blocks = {n: v["blocks"] for n, v in smoke[0]["variants"].items()}
    assert blocks["integer"]["ioso"]["tiny"] == {"cells": 0, "area": 0.0, "sequential_area": 0.0}
    assert 0 < blocks["ioso"]["ioso"]["tiny"]["area"] < blocks["icwq"]["ioso"]["tiny"]["area"]
    assert blocks["fp16"]["requant"]["tiny"]["area"] != blocks["integer"]["requant"]["tiny"]["area"]
    for name in ("array", "activation"):        # the same RTL in every variant, synthesized once
        assert len({json.dumps(b[name], sort_keys=True) for b in blocks.values()}) == 1
    overhead = smoke[0]["overhead"]["tiny"]["ioso"]
    base = smoke[0]["variants"]["integer"]["total"]["tiny"]["area"]
    assert overhead["percent_of_total"] == pytest.approx(100 * overhead["delta"] / base, abs=1e-3)
    assert 0 < overhead["percent_of_total"] < overhead["percent_of_datapath"]


def test_memories_are_bits_not_cells(smoke):
    mems = {m["name"]: m for m in smoke[0]["variants"]["integer"]["memories"]}
    assert mems["act_mem"]["bits"] == 128 * SMALL.act and mems["act_mem"]["block"] == "controller"
    assert mems["mem"]["block"] == "accumulator" and mems["mem"]["depth"] == SMALL.acc
    fp16 = {m["name"]: m for m in smoke[0]["variants"]["fp16"]["memories"]}
    assert fp16["table_0"]["width"] == 32 < mems["table_0"]["width"] == 96    # FP16 m and b
    # 128-bit words of 64 ACT words would be 8,192 flops: the controller holds far fewer
    controller = smoke[0]["variants"]["integer"]["blocks"]["controller"]["tiny"]
    assert controller["sequential_area"] < 6 * 8192


def test_second_run_reads_the_cache(smoke):
    doc, _, work, engines, libs = smoke
    logs = sorted(work.glob("*.log"))
    again = area.area_report(engines, SMALL, libs, work, jobs=2, baseline=variants.BASELINE,
                             progress=False)
    assert again == doc and sorted(work.glob("*.log")) == logs


def test_generic_counts_without_a_library(smoke):
    doc, lat, work, engines, _ = smoke
    generic = area.area_report(engines, SMALL, [], work, jobs=2, baseline=variants.BASELINE,
                               progress=False)
    assert generic["libraries"] == [] and set(generic["overhead"]) == {"generic"}
    text = page.document(generic, lat, "hardware_area.png", "hardware_networks.png")
    assert "No liberty file was available" in text and "transistors" in text


def test_page_shows_table11(smoke, tmp_path):
    doc, lat, *_ = smoke
    text = page.document(doc, lat, "hardware_area.png", "hardware_networks.png")
    assert "## Table 11, side by side" in text and "429,342" in text and "1,129.2775" in text
    for v in variants.VARIANTS.values():
        assert v.title in text
    assert str(liberty.ROOT) not in text and "/tmp" not in text
    assert "cycle model" in page.summary(doc, lat)
    page.plot(doc, str(tmp_path / "area.png"))
    assert (tmp_path / "area.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_whole_network():
    """mobilenet_v2's every op on the product build: the kinds add up to the totals, the 3x3
    depthwise convs run on the depthwise path (a window per cycle: 144 MACs, 9/16 of the
    array's rate, less the padding and weight loads of 1x1 to 16x16 maps), the page lists it."""
    whole = latency.whole_network("mobilenet_v2", EngineParams(), size=32)
    kinds, total = whole["kinds"], whole["total"]
    assert list(kinds) == ["first conv", "dense conv", "depthwise conv", "FC", "residual add", "average pool"]
    assert kinds["depthwise conv"]["ops"] == 17 and kinds["residual add"]["ops"] == 10
    assert total["cycles"] == sum(k["cycles"] for k in kinds.values())
    assert total["ratio"] == pytest.approx(total["cycles"] / (total["macs"] / 256))
    dw = kinds["depthwise conv"]
    assert kinds["residual add"]["macs"] == 0 and 16 / 9 < dw["cycles"] / dw["mac_bound"] < 10
    lat = {"whole_networks": {"mobilenet_v2": whole}, "clock_mhz": 400}
    assert "| mobilenet_v2 | 64 |" in page.whole_network_table(lat)   # 53 convs and FC, 10 adds, 1 pool


def test_smoke_page_names_the_uncovered_network(smoke):
    assert "resnet18: the cycle model does not cover it" in page.whole_network_table(smoke[1])


def test_rtl_runs_fill_the_network_tables(smoke, monkeypatch):
    """The report's RTL runs (here stand-ins with the model's counts, one with mismatches) land
    in the Table 11 row, the RTL columns of the network tables and the agreement counts."""
    doc, _, _, engines, _ = smoke

    def run(layer, variant, params, mismatches=0):
        net, path = layer.split(":")
        info = next(i for i in zoo.layers(net, latency.SIZE) if i.path == path)
        c = cycles.layer_cycles(latency.zoo_shape(info), params)
        rep = {"passes": c.passes, "cycles": c.cycles, "model_cycles": c.cycles,
               "ideal_cycles": c.ideal, "utilization": c.utilization, "outputs_checked": 10,
               "mismatches": mismatches}
        return latency._rtl_entry(layer, variant, latency.describe(info), rep)

    monkeypatch.setattr(latency, "simulate_layer",
                        lambda alias, variant, params: run("resnet50:layer2.1.conv2", variant, params))
    monkeypatch.setattr(latency, "simulate_network", lambda net, params, variant, progress: [
        run(f"{net}:conv1", variant, params, mismatches=3 * (net == "resnet18")),
        run(f"{net}:layer1.0.conv2", variant, params)])
    lat = latency.latency_report(engines, with_rtl=True, progress=False, **WHOLE)
    assert lat["agreement"] == {"runs": 5, "agree": 5, "bit_exact": 4}
    t11 = lat["table11"]["variants"][variants.BASELINE]
    assert t11["rtl_cycles"] == t11["cycles"]
    rows = {r["layer"]: r for r in lat["networks"]["resnet18"]["layers"]}
    assert rows["conv1"]["rtl_mismatches"] == 3
    assert rows["layer1.0.conv2"]["rtl_cycles"] == rows["layer1.0.conv2"]["cycles"]
    assert rows["layer1.0.conv1"]["rtl_cycles"] is None
    text = page.document(doc, lat, "hardware_area.png", "hardware_networks.png")
    assert "**NO** (3)" in text and "4 layers through the engine RTL on the product build" in text
    assert "4 of 5 are bit-exact against golden (50 output codes)" in text


# ---- refusals and helpers


def test_missing_liberty_is_named(tmp_path, capsys):
    missing = tmp_path / "nope.lib"
    assert cli.main(["--liberty", str(missing), "--no-sim", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"liberty file {missing} does not exist" in err and "LIBERTY=" in err


def test_bad_job_count_is_refused(capsys):
    with pytest.raises(SystemExit):
        cli.parse(["--jobs", "0"])
    assert "error: --jobs 0" in capsys.readouterr().err


@pytest.mark.parametrize("argv, why", [(["--lanes", "3"], "lanes=3 does not divide cols=16: use one of 1, 2, 4, 8, 16"),
                                       (["--cols", "0"], "cols=0: use 1..16"),
                                       (["--rows", "32"], "rows=32: use 1..16")])
def test_bad_engine_sizes_are_refused_before_any_work(argv, why, tmp_path, capsys):
    assert cli.main([*argv, "--no-sim", "--out", str(tmp_path)]) == 2
    assert why in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_a_file_that_is_not_liberty_is_refused(tmp_path):
    (tmp_path / "x.lib").write_text("module m; endmodule\n")
    with pytest.raises(PyiosoError, match="is not a liberty file"):
        liberty.libraries(tmp_path / "synth", liberty=str(tmp_path / "x.lib"))


def test_no_pdk_means_generic(tmp_path):
    assert liberty.libraries(tmp_path, pdk="no/such/pdk") == []


def test_renumbering_is_a_bijection():
    text = "connect \\port$851$0 \\a$3\ncell $add $851\nconnect \\port$9$0 \\b"
    assert blocks._renumber(text) == "connect \\port$0$1 \\a$2\ncell $add $0\nconnect \\port$3$1 \\b"


def test_every_subtree_of_a_block_is_synthesized(smoke):
    """The add path is its unit and its feed, two siblings under the top: one source each (one
    top would drop the other), summed into the block."""
    _, _, work, engines, _ = smoke
    sources, _ = blocks.engine_blocks(engines["ioso"], SMALL, work)
    tops = {s.top for s in sources if s.block in ("add", "depthwise", "lanes")}
    assert tops == {"engine.add", "engine.add_feed", "engine.dw", "engine.window", "engine.narrow",
                    "engine.widen"}


def test_timing_of_every_variant(smoke):
    """OpenSTA times the whole engine of each variant, mapped for the common clock and for
    speed; the IOSO unit's arithmetic lies between the array's registers and the
    accumulator's (or its own register stage)."""
    doc = smoke[0]
    timed = doc["timing"]["tiny"]
    assert list(timed) == list(variants.VARIANTS)
    names = {b.name for b in blocks.BLOCKS} | {"port"}
    for t in timed.values():
        assert t["clock"]["period_ps"] == 2000          # the tiny library's 500 MHz
        for target in ("clock", "fastest"):
            path = t[target]["critical"]
            assert path["start_block"] in names and path["end_block"] in names
            assert path["min_period_ps"] == pytest.approx(2000 + path["arrival_ps"] - path["required_ps"])
            assert path["cells"] > 0 and path["min_period_ps"] >= 100 * path["cells"]   # 100 ps a cell
        assert t["fastest"]["datapath"]["min_period_ps"] <= t["fastest"]["critical"]["min_period_ps"]
    shift, registered = timed["ioso"]["clock"]["ioso"], timed["ioso_reg"]["clock"]["ioso"]
    assert (shift["start_block"], shift["end_block"], shift["end_kind"]) == ("array", "accumulator", "register")
    assert (registered["start_block"], registered["end_block"]) == ("array", "ioso")
    assert timed["integer"]["clock"]["ioso"]["cells"] < shift["cells"]


def test_netlists_read_by_opensta(tmp_path):
    """Yosys's Verilog rewritten into what OpenSTA 2019 reads: no `signed`, no brackets in
    escaped names, one assign per bit."""
    path = tmp_path / "n.v"
    path.write_text("module m (a, o);\n  input signed [3:0] a;\n  output [7:0] o;\n"
                    "  wire \\x.q[3]_2_ ;\n  assign { o[7:6], o[1] } = { 2'bx1, a[3] };\n"
                    "  assign o[5:2] = a;\n  assign \\x.q[3]_2_  = a[0];\nendmodule\n")
    timing.plain_verilog(path)
    text = path.read_text()
    assert "signed" not in text and "{" not in text and "\\x.q_3__2_ " in text
    assert [line.strip() for line in text.splitlines() if "assign" in line] == [
        "assign o[7] = 1'b0;", "assign o[6] = 1'b1;", "assign o[1] = a[3];", "assign o[5] = a[3];",
        "assign o[4] = a[2];", "assign o[3] = a[1];", "assign o[2] = a[0];", "assign \\x.q_3__2_  = a[0];"]


REPORT = """Startpoint: array/_41377_ (rising edge-triggered flip-flop clocked by clk)
Endpoint: acc/_7520_ (rising edge-triggered flip-flop clocked by clk)
Path Group: clk
Path Type: max

  Delay    Time   Description
---------------------------------------------------------
   0.0000    0.0000   clock clk (rise edge)
   0.0000    0.0000 ^ array/_41377_/C (DFF)
   0.1000    0.1000 v array/_41377_/Q (DFF)
   0.1000    0.2000 v ioso/_1154_/Y (BUF)
   0.1000    0.3000 ^ acc/_4424_/Y (NOR2)
   0.0000    0.3000 ^ acc/_7520_/D (DFF)
             0.3000   data arrival time

   2.0000    2.0000   clock clk (rise edge)
  -0.0500    1.9500   library setup time
             1.9500   data required time
---------------------------------------------------------
             1.9500   data required time
            -0.3000   data arrival time
---------------------------------------------------------
             1.6500   slack (MET)
"""


def test_a_timing_report_is_read():
    path = timing.parse_path(REPORT, unit_ps=1000, period_ps=2000)
    assert (path.start_block, path.end_block, path.start_kind, path.end_kind) == (
        "array", "accumulator", "register", "register")
    assert path.cells == 2 and path.min_period_ps == pytest.approx(300 - 1950 + 2000)
    assert timing.parse_path("No paths found.", 1, 2000) is None


def test_blocks_by_longest_prefix():
    assert blocks.block_of("engine.array.pe_3_1").name == "array"
    assert blocks.block_of("engine").name == blocks.block_of("engine.feed").name == "controller"
    assert blocks.block_of("engine.widen").name == "lanes"


def test_yosys_runs_once_alone_before_runs_side_by_side(monkeypatch, tmp_path):
    """YoWASP's first run compiles Yosys into a cache file that parallel runs must not race on."""
    import subprocess

    calls = []
    monkeypatch.setattr(yosys.subprocess, "run",
                        lambda argv, **_: calls.append(argv) or subprocess.CompletedProcess(argv, 0, "", ""))
    yosys.prepare_yosys.cache_clear()
    for _ in range(2):
        with area.Synthesis([], tmp_path, jobs=2, progress=False) as synthesis:
            assert calls == [[yosys._yosys(), "-V"]] and not synthesis.running
    yosys.prepare_yosys.cache_clear()
