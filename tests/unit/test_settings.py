"""OperatorSettings: defaults, INFERGATE_ environment, precedence, comma lists."""

from __future__ import annotations

import pytest
from infergate_operator.settings import OperatorSettings


def test_defaults() -> None:
    settings = OperatorSettings()
    assert settings.gpu_resource_name == "nvidia.com/gpu"
    assert settings.gpu_taint_key == "nvidia.com/gpu"
    assert settings.gpu_product_label == "nvidia.com/gpu.product"
    assert settings.namespaces == ()


def test_environment_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERGATE_SERVER_IMAGE", "registry.local/igs:1")
    monkeypatch.setenv("INFERGATE_NAMESPACES", "team-a, team-b,")
    monkeypatch.setenv("INFERGATE_HEALTH_PORT", "9000")
    monkeypatch.setenv("SERVER_IMAGE", "ignored-without-prefix")
    settings = OperatorSettings()
    assert settings.server_image == "registry.local/igs:1"
    assert settings.namespaces == ("team-a", "team-b")
    assert settings.health_port == 9000


def test_arguments_beat_environment_beats_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERGATE_METRICS_PORT", "9100")
    assert OperatorSettings().metrics_port == 9100
    assert OperatorSettings(metrics_port=9200).metrics_port == 9200
    monkeypatch.delenv("INFERGATE_METRICS_PORT")
    assert OperatorSettings().metrics_port == 8082


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERGATE_HEALTH_PORT", "70000")
    with pytest.raises(ValueError, match="health_port"):
        OperatorSettings()


def test_every_setting_is_documented() -> None:
    for name, field in OperatorSettings.model_fields.items():
        assert field.description, name


@pytest.mark.parametrize("template", ["http://{svc}/golden", "http://{0}/golden", "http://{service/golden"])
def test_golden_url_template_with_an_unknown_placeholder_is_refused(template: str) -> None:
    with pytest.raises(ValueError, match="golden_url_template"):
        OperatorSettings(golden_url_template=template)
