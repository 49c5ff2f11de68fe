"""Every config file in configs/ loads, and the recipes chosen on valid keep test out of training."""
import importlib.util
import pathlib

import pytest

CONFIGS = sorted((pathlib.Path(__file__).resolve().parents[1] / "configs").glob("*.py"))


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_with_its_default_arg(path):
    c = _load(path).get_config()
    assert c is not None


@pytest.mark.parametrize("name,arg", [("sketchnet_qd10", None), ("mobilenetv2_s2_qd10", "onecycle"),
                                      ("qat_sketchnet_qd10", None), ("qat_sketchnet_qd10", "mobilenetv2_s2")])
def test_valid_chosen_recipes_watch_valid_carved_from_train(name, arg):
    c = _load(CONFIGS[[p.stem for p in CONFIGS].index(name)]).get_config(arg)
    assert c.eval_split == "valid" and c.data.valid_fraction == 0.1


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="onecycle"):
        _load(CONFIGS[[p.stem for p in CONFIGS].index("mobilenetv2_s2_qd10")]).get_config("fast")
