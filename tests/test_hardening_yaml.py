"""Hostile and hand-written YAML configs (issue 16): bounded loading, merge keys, numbers as people write them."""

import tracemalloc

import pytest
from click.testing import CliRunner

from sparsetopo.cli import app
from sparsetopo.config import MAX_YAML_DEPTH, MAX_YAML_NODES, load_yaml_mapping
from sparsetopo.errors import FileFormatError
from sparsetopo.training import TrainConfig, load_config_file
from test_hardening import one_line_error

runner = CliRunner()


def _billion_laughs(levels: int = 9) -> str:
    text = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    prev = "a"
    for k in range(1, levels):
        name = f"n{k}"
        text += f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
        prev = name
    return text + f"lr: *{prev}\n"


def _write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_alias_bomb_is_refused_while_composing_in_little_memory(tmp_path):
    path = _write(tmp_path, _billion_laughs())
    tracemalloc.start()
    try:
        with pytest.raises(FileFormatError) as err:
            load_yaml_mapping(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(err.value).startswith(f"{path}: expands to more than {MAX_YAML_NODES} values through aliases")
    assert peak < 20 * 2**20  # composing stopped early: nothing near the 9**9 expanded strings was built


def test_alias_bomb_through_the_cli_is_one_named_line(tmp_path, tiny_data):
    path = _write(tmp_path, _billion_laughs())
    res = runner.invoke(app, ["train", "--data-dir", str(tiny_data), "--config", str(path),
                              "--out", str(tmp_path / "run"), "-q"])
    one_line_error(res, str(path), "expands to more than")
    assert not (tmp_path / "run").exists()


def test_small_aliases_still_work(tmp_path):
    path = _write(tmp_path, "hidden: &h [16, 16]\nseeds: *h\n")
    assert load_yaml_mapping(path) == {"hidden": [16, 16], "seeds": [16, 16]}


@pytest.mark.parametrize("text,line", [
    ("x: " + "[" * 5000 + "]" * 5000 + "\n", 1),                                       # flow style
    ("".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v\n", MAX_YAML_DEPTH),  # block style
])
def test_deep_nesting_is_a_named_error_not_a_recursion_error(tmp_path, text, line):
    path = _write(tmp_path, text)
    with pytest.raises(FileFormatError) as err:
        load_yaml_mapping(path)
    assert str(err.value) == f"{path}: nested deeper than {MAX_YAML_DEPTH} levels (line {line})"


def test_nesting_within_the_bound_is_read(tmp_path):
    depth = MAX_YAML_DEPTH - 2
    path = _write(tmp_path, "x: " + "[" * depth + "1" + "]" * depth + "\n")
    value = load_yaml_mapping(path)["x"]
    for _ in range(depth - 1):
        (value,) = value
    assert value == [1]


def test_merge_keys_work_and_own_keys_override_them(tmp_path):
    path = _write(tmp_path, "base: &b {lr: 0.1, epochs: 2}\nrun:\n  <<: *b\n  epochs: 3\n")
    assert load_yaml_mapping(path) == {"base": {"lr": 0.1, "epochs": 2}, "run": {"lr": 0.1, "epochs": 3}}
    path = _write(tmp_path, "a: &a {lr: 0.1}\nb: &b {epochs: 2}\nrun:\n  <<: [*a, *b]\n")
    assert load_yaml_mapping(path)["run"] == {"lr": 0.1, "epochs": 2}


def test_merge_keys_do_not_hide_duplicates(tmp_path):
    path = _write(tmp_path, "base: &b {lr: 0.1}\nrun:\n  <<: *b\n  epochs: 3\n  epochs: 4\n")
    with pytest.raises(FileFormatError, match=r"c.yaml: duplicate key 'epochs' \(lines 4 and 5\)"):
        load_yaml_mapping(path)


def test_merged_train_config_validates(tmp_path):
    path = _write(tmp_path, "common: &c {lr: 0.05, epochs: 3}\n<<: *c\nmomentum: 0.5\n")
    data = load_config_file(path)
    data.pop("common")
    cfg = TrainConfig.from_dict(data, source=str(path))
    cfg.validate()
    assert (cfg.lr, cfg.epochs, cfg.momentum) == (0.05, 3, 0.5)


@pytest.mark.parametrize("written,value", [
    ("1e-3", 1e-3), ("1E-3", 1e-3), ("+1e3", 1e3), ("-2e-5", -2e-5), ("1.0e3", 1e3), ("1e+2", 100.0),
    (".5", 0.5), ("5.", 5.0), ("0.1", 0.1),
])
def test_numbers_with_exponents_are_floats(tmp_path, written, value):
    assert load_yaml_mapping(_write(tmp_path, f"lr: {written}\n")) == {"lr": value}


@pytest.mark.parametrize("written", ["1e", "e5", "1e-", "1.2.3e4", "0x1p3"])
def test_non_numbers_stay_strings(tmp_path, written):
    assert load_yaml_mapping(_write(tmp_path, f"name: {written}\n")) == {"name": written}


def test_lr_in_exponent_form_is_accepted_by_train(tmp_path):
    path = _write(tmp_path, "lr: 1e-3\nweight_decay: 2E-4\nepochs: 1_000\n")
    cfg = TrainConfig.from_dict(load_config_file(path), source=str(path))
    cfg.validate()
    assert (cfg.lr, cfg.weight_decay, cfg.epochs) == (1e-3, 2e-4, 1000)


@pytest.mark.parametrize("written,got", [("1e3", "1000.0"), ("1000.0", "1000.0")])
def test_integral_floats_for_integer_fields_are_refused_with_a_hint(tmp_path, tiny_data, written, got):
    path = _write(tmp_path, f"epochs: {written}\n")
    res = runner.invoke(app, ["train", "--data-dir", str(tiny_data), "--config", str(path),
                              "--out", str(tmp_path / "run"), "-q"])
    one_line_error(res, str(path), f"--epochs must be an integer >= 1; got {got} "
                                   "(write an integer without a decimal point or exponent: 1000)")


def test_unhashable_keys_are_named_not_a_type_error(tmp_path):
    path = _write(tmp_path, "? [1, 2]\n: 3\n")
    with pytest.raises(FileFormatError, match=r"c.yaml: keys must be names, got a list \(line 1\)"):
        load_yaml_mapping(path)


def test_huge_values_are_cut_in_messages(tmp_path, tiny_data):
    path = _write(tmp_path, "hidden: [" + ", ".join(["'x'"] * 50_000) + "]\n")
    res = runner.invoke(app, ["train", "--data-dir", str(tiny_data), "--config", str(path),
                              "--out", str(tmp_path / "run"), "-q"])
    line = one_line_error(res, str(path), "--hidden must be a list of integers")
    assert len(line) < 1000 and "..." in line


def test_oversized_yaml_file_is_refused_before_reading(tmp_path, monkeypatch):
    import sparsetopo.config as config

    monkeypatch.setattr(config, "MAX_YAML_BYTES", 100)
    path = _write(tmp_path, "lr: 0.1\n" * 20)
    with pytest.raises(FileFormatError, match=r"c.yaml: 160 bytes is too large for a YAML config \(at most 100\)"):
        load_yaml_mapping(path)
