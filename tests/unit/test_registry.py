"""The variant registry and the method table: one entry is one variant, and a bad entry fails at import."""
import pytest

from study import variants
from study.config import METHODS, ModelConfig
from study.variants import VARIANTS, Variant, variant_config


def test_a_variant_without_a_label_or_macro_or_with_a_bad_config_fails_loudly():
    good = dict(name="x", label="X", macro="Xx", config={"method": "euler"})
    variants._entries(Variant(**good))
    with pytest.raises(ValueError, match="has no label"):
        variants._entries(Variant(**{**good, "label": ""}))
    with pytest.raises(ValueError, match="letters only"):
        variants._entries(Variant(**{**good, "macro": "X1"}))
    with pytest.raises(ValueError, match="used twice"):
        variants._entries(Variant(**good), Variant(**{**good, "name": "y", "label": "Y"}))
    with pytest.raises(ValueError, match="unknown model option"):
        variants._entries(Variant(**{**good, "config": {"method": "euler", "stepz": 3}}))
    with pytest.raises(ValueError, match="torchdiffeq has no 'rk4'"):
        variants._entries(Variant(**{**good, "config": {"backend": "torchdiffeq", "method": "rk4"}}))
    with pytest.raises(TypeError):
        Variant(name="z", macro="Z", config={})  # no label at all


def test_every_variant_has_a_style_and_a_place_in_the_order():
    from study.report import style

    assert style.ordered(reversed(list(VARIANTS))) == list(VARIANTS)
    for name in VARIANTS:
        assert style.colour(name).startswith("#") and style.marker(name) and style.line(name)
        assert style.label(name) == VARIANTS[name].label
    with pytest.raises(KeyError, match="unknown variant"):
        style.colour("no-such-variant")


def test_torchdiffeq_rk4_is_our_three_eighths_rule_in_one_place():
    assert [m.name for m in METHODS.values() if m.torchdiffeq == "rk4"] == ["rk4-38"]
    assert variant_config("tdq-rk4").method == "rk4-38" and variant_config("adjoint-rk4").method == "rk4-38"
    with pytest.raises(ValueError, match="torchdiffeq has no 'rk4'"):
        variant_config("tdq-euler", method="rk4")


@pytest.mark.parametrize("overrides", [{}, {"lift_dim": 2}, {"lift_dim": 8, "time_input": False}, {"hidden": 32}])
@pytest.mark.parametrize("variant", ["euler", "resnet"])
def test_parameter_count_from_the_config_equals_the_models(variant, overrides):
    from study.engine.models import Classifier

    cfg = variant_config(variant, **overrides)
    assert cfg.param_count() == Classifier(cfg, [0]).param_count()


def test_config_validation_messages():
    with pytest.raises(KeyError, match="unknown variant"):
        variant_config("rk5")
    with pytest.raises(ValueError, match="unknown model option"):
        variant_config("euler", step=3)
    with pytest.raises(ValueError, match="dopri5 needs positive rtol and atol"):
        variant_config("euler", method="dopri5")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        ModelConfig(steps=0).validate()
    with pytest.raises(ValueError, match="unknown method 'rk5'"):
        ModelConfig(method="rk5").validate()
    with pytest.raises(ValueError, match="needs positive rtol and atol"):
        ModelConfig(backend="torchdiffeq", method="dopri5").validate()


def test_one_entry_adds_a_variant_everywhere(monkeypatch):
    """The README's example: a hand midpoint variant reaches the plan, the style and the numbers from one entry."""
    from study import experiments
    from study.report import style, tables
    from study.report.numbers import Numbers
    from tests.unit.test_tables import train_record, view_of

    extra = Variant("midpoint", "midpoint (hand)", "Midpoint",
                    {"model": "ode", "backend": "hand", "method": "midpoint", "steps": 20})
    monkeypatch.setattr(variants, "VARIANTS", variants._entries(*VARIANTS.values(), extra))
    assert any(j.config.get("variant") == "midpoint" for j in experiments.plan("quick", ["main", "timing"]))
    assert style.colour("midpoint") == style.METHOD_COLOURS["midpoint"] and style.marker("midpoint") == "o"
    N = Numbers()
    tex = tables.main_numbers(view_of("main", [train_record("midpoint", 0, 0.85, 0.9, nfe=40 * 8 * 500)]), N)
    assert N.items["MidpointTestAcc"] == "85.0" and "midpoint (hand) & 18{,}906" in tex
