"""Hardware-config schema: every shipped YAML loads and fits the reference models, derived values match hand
computations, overrides work, and every bad input is a one-line ConfigError naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from codesign.errors import ConfigError
from codesign.sim.config import HwConfig, load_hwconfig, parse_hwconfig

HWCONFIGS = sorted((Path(__file__).parents[2] / "hwconfigs").glob("*.yaml"))
BANK64 = next(p for p in HWCONFIGS if p.name == "bank64.yaml")
SMOLLM2 = dict(hidden=576, intermediate=1536, layers=30)
QWEN7B = dict(hidden=3584, intermediate=18944, layers=28)


def test_all_six_configs_ship():
    assert {p.stem for p in HWCONFIGS} >= {"bank64", "bank32", "bank128", "dense64", "lpddr5-edge", "h200"}


@pytest.mark.smoke
@pytest.mark.parametrize("path", HWCONFIGS, ids=lambda p: p.stem)
def test_every_hwconfig_loads_and_fits_both_reference_models(path):
    cfg = load_hwconfig(path)
    assert cfg.source == str(path)
    for model in (SMOLLM2, QWEN7B):
        if model["intermediate"] % cfg.sparsity.bank_size:  # B not dividing I must be a clear error
            with pytest.raises(ConfigError, match="sparsity.bank_size"):
                cfg.check_model(**model)
            continue
        fit = cfg.check_model(**model, dtype_bytes=2)
        assert fit.bundle_bytes == 3 * model["hidden"] * 2
        assert fit.bundles_per_sram_bank >= 1
    json.dumps(cfg.resolved())  # the resolved config is plain JSON


def test_bank64_derived_values_by_hand():
    cfg = load_hwconfig(BANK64)
    assert cfg.peak_dram_bandwidth_bytes_per_s == 819.2e9  # HBM3: 32 pseudo-ch × 32 bit × 6.4 GT/s / 8
    assert cfg.sram_capacity_bytes == 64 * 256 * 1024
    assert cfg.cycle_time_s == 1e-9
    assert cfg.peak_macs_per_s == 16384 * 1e9
    # Four CACTI 22 nm 64 KB × 64 B macros: 0.0198912 nJ read, 1.16857 ns cycle -> 2 cycles per macro at 1 GHz,
    # four macros in turn -> one line per cycle per bank
    assert cfg.sram.macros_per_bank == 4
    assert cfg.sram.read_energy_pj == 19.8912
    assert cfg.sram.leakage_mw_per_bank == pytest.approx(4 * 0.00942319)
    assert cfg.sram.area_mm2_per_bank == pytest.approx(4 * 0.0530291)
    assert cfg.sram_line_interval_cycles == 1
    assert cfg.sram_read_bytes_per_cycle == 64 * 64
    one = load_hwconfig(BANK64, ["sram.macros_per_bank=1"])  # one 256 KB macro: 2.21748 ns -> 3 cycles
    assert (one.sram.read_energy_pj, one.sram_line_interval_cycles) == (50.7165, 3)
    assert one.sram.leakage_mw_per_bank == 0.0348592 and one.sram.area_mm2_per_bank == 0.248147
    dev = cfg.dram_device
    assert (dev.channels, dev.burst_bytes, dev.burst_ns) == (32, 32, 1.25)
    assert dev.unloaded_read_ns == pytest.approx(19.4 + 12.5 + 1.25)
    assert dev.refresh_fraction == pytest.approx(260 / 3900)


def test_bank64_fit_for_qwen_by_hand():
    fit = load_hwconfig(BANK64).check_model(**QWEN7B)
    assert fit.bundle_bytes == 21504  # 3 × 3584 × 2 B = 21.5 KB (HARDWARE_NUMBERS.md)
    assert fit.model_banks_per_layer == 296
    assert fit.model_bank_bytes == 64 * 21504  # 1.38 MB
    assert fit.bundles_per_sram_bank == 262144 // 21504 == 12
    assert fit.model_banks_mapped_per_sram_bank == 5  # ceil(296 / 64)
    assert fit.ffn_bytes_per_layer == 18944 * 21504  # 407 MB


def test_other_presets_peak_bandwidth():
    h200 = load_hwconfig(next(p for p in HWCONFIGS if p.stem == "h200"))
    assert h200.peak_dram_bandwidth_bytes_per_s == pytest.approx(4.8e12, rel=1e-12)
    edge = load_hwconfig(next(p for p in HWCONFIGS if p.stem == "lpddr5-edge"))
    assert edge.peak_dram_bandwidth_bytes_per_s == pytest.approx(51.2e9, rel=1e-12)
    ddr5 = load_hwconfig(BANK64, ["dram.preset=ddr5", "dram.stacks=2"])
    assert ddr5.peak_dram_bandwidth_bytes_per_s == pytest.approx(2 * 25.6e9, rel=1e-12)


def test_overrides_apply_and_reach_the_device():
    cfg = load_hwconfig(
        BANK64,
        [
            "sparsity.k=8",
            "dram.timing.tRCD_ns=20",
            "batch=4",
            "dram.bandwidth_gbps=1000",
            "sram.residency=lfu",
        ],
    )
    assert (cfg.sparsity.k, cfg.batch, cfg.sram.residency) == (8, 4, "lfu")
    assert cfg.dram_device.timing.tRCD_ns == 20.0
    assert cfg.dram_device.timing.tCL_ns == 12.5  # untouched keys keep the preset
    assert cfg.peak_dram_bandwidth_bytes_per_s == pytest.approx(1000e9, rel=1e-12)
    assert "overridden" in cfg.resolved()["dram"]["device"]["sources"]["timing"]


def test_explicit_sram_costs_win_over_cacti_and_are_attributed():
    cfg = load_hwconfig(BANK64, ["sram.read_energy_pj=42.0"])
    assert cfg.sram.read_energy_pj == 42.0
    sources = cfg.resolved()["sram"]["cost_sources"]
    assert sources["read_energy_pj"] == "hwconfig"
    assert sources["write_energy_pj"].startswith("CACTI 7")


def test_sram_costs_follow_an_overridden_bank_size():
    small = load_hwconfig(BANK64, ["sram.bank_size_bytes=32768", "sram.macros_per_bank=1"])
    assert small.sram.read_energy_pj == pytest.approx(10.2536)  # CACTI row 32 KB × 64 B (HN: 10.3 pJ)


def test_macros_per_bank_trade_energy_for_port_bandwidth():
    two = load_hwconfig(BANK64, ["sram.macros_per_bank=2"])  # two 128 KB macros: 1.16857 ns cycle, in turn
    assert (two.sram.read_energy_pj, two.sram_line_interval_cycles) == (31.3419, 1)
    assert two.sram.leakage_mw_per_bank == pytest.approx(2 * 0.0188464)
    assert two.sram.area_mm2_per_bank == pytest.approx(2 * 0.145675)
    four = load_hwconfig(BANK64, ["sram.macros_per_bank=4"])  # 64 KB macros
    assert four.sram.read_energy_pj == 19.8912 and four.sram_line_interval_cycles == 1
    assert four.sram.leakage_mw_per_bank == pytest.approx(4 * 0.00942319)
    assert (
        load_hwconfig(BANK64, ["sram.macros_per_bank=1", "clock.frequency_hz=2e9"]).sram_line_interval_cycles
        == 5
    )  # 2.22 ns / 0.5 ns
    assert (
        load_hwconfig(BANK64, ["sram.macros_per_bank=2", "clock.frequency_hz=2e9"]).sram_line_interval_cycles
        == 2
    )


def test_with_sparsity_and_dense_baseline_keep_the_hardware():
    cfg = load_hwconfig(BANK64, ["dram.timing.tRCD_ns=20"])
    dense = cfg.dense_baseline()
    assert dense.sparsity.k == dense.sparsity.bank_size == 64 and dense.sparsity.is_dense
    assert (dense.sram, dense.dram, dense.compute, dense.clock) == (
        cfg.sram,
        cfg.dram,
        cfg.compute,
        cfg.clock,
    )
    assert cfg.sparsity.k == 16  # the original is untouched
    b32 = cfg.with_sparsity(bank_size=32, k=8)
    assert (b32.sparsity.bank_size, b32.sparsity.k, b32.source) == (32, 8, cfg.source)
    with pytest.raises(ConfigError, match="sparsity.k"):
        cfg.with_sparsity(bank_size=8)  # k = 16 > B = 8


def test_configs_are_frozen():
    cfg = load_hwconfig(BANK64)
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its own ValidationError type
        cfg.sparsity.k = 3


def _write(tmp_path, data, name="hw.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def _bank64_dict() -> dict:
    return yaml.safe_load(BANK64.read_text())


# (override, key the message must name, a fragment of the message)
BAD_OVERRIDES = [
    ("sram.bank_size_bytes=-1", "sram.bank_size_bytes", "greater than 0"),
    ("sram.num_banks=0", "sram.num_banks", "greater than 0"),
    ("sparsity.k=65", "sparsity.k", "exceeds bank_size=64"),
    ("sparsity.k=0", "sparsity.k", "greater than 0"),
    ("sparsity.bank_size=-64", "sparsity.bank_size", "greater than 0"),
    ("clock.frequency_hz=0", "clock.frequency_hz", "greater than 0"),
    ("dram.preset=hbm4", "dram.preset", "valid: ddr5, hbm2, hbm3, hbm3e, lpddr5"),
    ("dram.model=magic", "dram.model", "valid: bank_timing, ideal"),
    ("sram.residency=fifo", "sram.residency", "'lru'"),
    ("sparsity.execution=gather", "sparsity.execution", "batch_union"),
    ("sram.technology=7nm", "sram.technology", "22nm_lstp"),
    ("dram.timing.tRCD_ns=-3", "dram.timing.tRCD_ns", "greater than 0"),
    ("dram.timing.tRFC_ns=5000", "dram.timing.tRFC_ns", "below tREFI_ns"),
    ("dram.geometry.interleave_bytes=48", "dram.geometry.interleave_bytes", "multiple of the burst"),
    ("dram.geometry.data_rate_gtps=8", "dram.bandwidth_gbps", None),  # with the next one, both set
    (
        "sram.bank_size_bytes=8388608",
        "sram.bank_size_bytes",
        "a 2097152 B macro is outside the CACTI 22nm_lstp sweep",
    ),
    ("sram.line_bytes=512", "sram.line_bytes", "a 512 B line is outside"),
    ("sram.macros_per_bank=3", "sram.macros_per_bank", "do not split bank_size_bytes=262144 evenly"),
    ("sram.macros_per_bank=0", "sram.macros_per_bank", "greater than 0"),
    ("batch=two", "batch", "valid integer"),
    ("sram.num_banks=true", "sram.num_banks", "valid integer"),  # strict: no bool -> int
    ("sram.line_bytes=64.0", "sram.line_bytes", "valid integer"),
    ("sram.foo=1", "sram.foo", "unknown key; valid keys here: num_banks"),
    ("dram.timing.tXYZ_ns=1", "dram.timing.tXYZ_ns", "unknown key; valid keys here: tRCD_ns"),
    ("nonsense=1", "nonsense", "unknown key"),
    ("batch.size=2", "batch.size", "unknown key"),
    ("sparsity.k", "sparsity.k", "dotted.key=value"),
]


@pytest.mark.parametrize("override,key,fragment", BAD_OVERRIDES, ids=[o for o, _, _ in BAD_OVERRIDES])
def test_bad_override_is_one_line_naming_file_and_key(override, key, fragment):
    extra = ["dram.bandwidth_gbps=900"] if override.startswith("dram.geometry.data_rate_gtps") else []
    with pytest.raises(ConfigError) as info:
        load_hwconfig(BANK64, [override, *extra])
    message = str(info.value)
    print(message)
    assert "\n" not in message
    assert message.startswith(f"{BANK64}: {key}")
    if fragment:
        assert fragment in message


def test_bad_value_message_shows_the_value():
    with pytest.raises(ConfigError, match=r"sram.bank_size_bytes: .*\(got -1\)"):
        load_hwconfig(BANK64, ["sram.bank_size_bytes=-1"])


def test_unknown_key_in_the_yaml_file(tmp_path):
    data = _bank64_dict()
    data["dram"]["stackz"] = 2
    path = _write(tmp_path, data)
    with pytest.raises(
        ConfigError, match=rf"^{path}: dram.stackz: unknown key; valid keys here: preset, model"
    ):
        load_hwconfig(path)


def test_missing_section_and_missing_key(tmp_path):
    data = _bank64_dict()
    del data["clock"]
    with pytest.raises(ConfigError, match=r"hw.yaml: clock: required key is missing"):
        load_hwconfig(_write(tmp_path, data))
    data = _bank64_dict()
    del data["sram"]["line_bytes"]
    with pytest.raises(ConfigError, match=r"hw.yaml: sram.line_bytes: required key is missing"):
        load_hwconfig(_write(tmp_path, data))


def test_file_level_errors(tmp_path):
    with pytest.raises(ConfigError, match="hwconfig not found"):
        load_hwconfig(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line \d+"):
        load_hwconfig(_write(tmp_path, "name: x\nclock: [1, 2\n", "bad.yaml"))
    with pytest.raises(ConfigError, match=r"list.yaml: a hwconfig must be a YAML mapping"):
        load_hwconfig(_write(tmp_path, "- 1\n- 2\n", "list.yaml"))


def test_cacti_range_is_not_an_error_when_costs_are_explicit():
    costs = [
        "sram.read_energy_pj=300",
        "sram.write_energy_pj=320",
        "sram.leakage_mw_per_bank=0.5",
        "sram.area_mm2_per_bank=4",
        "sram.cycle_ns=3",
    ]
    cfg = load_hwconfig(BANK64, ["sram.bank_size_bytes=8388608", *costs])
    assert cfg.sram.cacti() is None
    assert set(cfg.resolved()["sram"]["cost_sources"].values()) == {"hwconfig"}


def test_check_model_errors_name_file_and_key():
    cfg = load_hwconfig(BANK64)
    with pytest.raises(ConfigError, match=rf"^{BANK64}: sparsity.bank_size: 64 does not divide .* 1000"):
        cfg.check_model(hidden=576, intermediate=1000, layers=30)
    # one bundle of hidden 65536 in bf16 = 393 KB > a 256 KB SRAM bank
    with pytest.raises(
        ConfigError, match=rf"^{BANK64}: sram.bank_size_bytes: 262144 cannot hold one channel bundle"
    ):
        cfg.check_model(hidden=65536, intermediate=1536, layers=1)
    with pytest.raises(ConfigError, match="layers must be positive"):
        cfg.check_model(hidden=576, intermediate=1536, layers=0)


def test_parse_from_dict_names_its_source():
    data = _bank64_dict()
    data["sparsity"]["k"] = 100
    with pytest.raises(ConfigError, match=r"^sweep\[3\]: sparsity.k: k=100 exceeds bank_size=64"):
        parse_hwconfig(data, source="sweep[3]")
    assert isinstance(parse_hwconfig(_bank64_dict()), HwConfig)


def test_variants_of_a_config_built_without_the_loader():
    cfg = HwConfig.model_validate(load_hwconfig(BANK64).model_dump())
    assert cfg.source == "<hwconfig>"
    assert cfg.dense_baseline().sparsity.k == 64


def test_scientific_notation_is_a_number_in_files_and_overrides():
    """PyYAML reads `1e9` as a string; the loader reads it as the float its author meant."""
    data = _bank64_dict()
    data["clock"]["frequency_hz"] = "2e9"
    assert parse_hwconfig(data).clock.frequency_hz == 2e9
    assert load_hwconfig(BANK64, ["clock.frequency_hz=1.5e9"]).clock.frequency_hz == 1.5e9
