"""The strict YAML reader and the hwconfig limits: each refusal is one line naming file and key."""

import pytest

from codesign.errors import ConfigError
from codesign.yamlio import load_yaml, loads_yaml


def test_reads_what_authors_mean():
    data = loads_yaml('a: 1e9\nb: 64\nc: 1.0e-4\nd: [2e3, "1e9"]\n')
    assert data == {"a": 1e9, "b": 64, "c": 1e-4, "d": [2000.0, "1e9"]}
    assert type(data["b"]) is int and type(data["a"]) is float


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: 1\nb: 2\na: 3\n", "line 3: duplicate key 'a' (first at line 1)"),
        ("s:\n  x: 1\n  x: 1\n", "duplicate key 'x'"),
        ("s: {lr: .inf}\n", "s.lr: inf is not a finite number"),
        ("s: [1, .nan]\n", "s[1]: nan is not a finite number"),
        ("a: [1\n", "not valid YAML"),
    ],
)
def test_refusals_name_the_problem(text, message):
    with pytest.raises(ConfigError) as exc:
        loads_yaml(text, "f.yaml")
    assert str(exc.value).startswith("f.yaml: ") and message in str(exc.value), exc.value


def test_binary_and_non_utf8_files(tmp_path):
    (tmp_path / "b.yaml").write_bytes(b"a: 1\n\x00\x00")
    (tmp_path / "l.yaml").write_bytes("a: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="binary file .NUL byte at offset 5"):
        load_yaml(tmp_path / "b.yaml")
    with pytest.raises(ConfigError, match="not UTF-8 text .byte 0xe9 at offset 6"):
        load_yaml(tmp_path / "l.yaml")
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_yaml(tmp_path / "none.yaml", "recipe file")


def test_hwconfig_limits():
    from codesign.sim.config import load_hwconfig
    from codesign.sim.config.limits import check_memory, check_numbers, estimate_state_bytes

    with pytest.raises(ConfigError, match=r"x: sram.num_banks: 1e\+16 is beyond"):
        check_numbers({"sram": {"num_banks": 10**16}}, "x")
    check_numbers({"sram": {"num_banks": 2**53, "flag": True}}, "x")  # the bound itself is allowed
    cfg = load_hwconfig("hwconfigs/bank64.yaml")
    parts = estimate_state_bytes(cfg)
    # 32 pseudo-channels × 16 banks × 2 words + 1; 64 SRAM banks × (3 words × 682 slots + 16)
    assert parts["dram channels × banks_per_channel"] == (2 * 32 * 16 + 1) * 8
    assert parts["sram.num_banks × sram.bank_size_bytes"] == 64 * (3 * (262144 // 384) + 16) * 8
    check_memory(cfg, available_bytes=sum(parts.values()))
    with pytest.raises(ConfigError, match="sram.num_banks × sram.bank_size_bytes: .* more than"):
        check_memory(cfg, available_bytes=sum(parts.values()) - 1)
