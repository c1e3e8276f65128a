"""Peering priorities (`--priority N|auto`) and the peering lifetime setting."""

from __future__ import annotations

import random

import kopf
import pytest

from stackforge_operator import config, peering
from stackforge_operator.cli import build_parser


def test_explicit_priorities_still_work() -> None:
    for text, value in (("100", 100), ("0", 0), ("-5", -5)):
        args = build_parser().parse_args(["run", "--peering=stackforge", f"--priority={text}"])
        assert peering.resolve_priority(args.priority) == value
    assert build_parser().parse_args(["run"]).priority == 0


@pytest.mark.parametrize("text", ["auto", "AUTO", " auto "])
def test_auto_draws_a_priority_at_start(text: str) -> None:
    args = build_parser().parse_args(["run", "--peering=stackforge", "--priority", text])
    assert args.priority == peering.AUTO
    low, high = peering.AUTO_RANGE
    assert low <= peering.resolve_priority(args.priority) <= high
    assert low > 0  # above kopf's default: a hand-started replica never outranks these


def test_auto_priorities_of_two_replicas_differ() -> None:
    # Equal priorities would pause both replicas; the range makes it ~5e-10 per pair.
    drawn = {peering.resolve_priority(peering.AUTO, random.Random(seed)) for seed in range(200)}
    assert len(drawn) == 200
    assert peering.auto_priority() != peering.auto_priority()


@pytest.mark.parametrize("text", ["high", "1.5", ""])
def test_other_priorities_are_refused(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--priority", text])
    assert "an integer or 'auto'" in capsys.readouterr().err


def test_peering_lifetime_defaults_short_enough_for_a_30s_failover() -> None:
    assert config.peering_lifetime({}) == config.DEFAULT_PEERING_LIFETIME == 20
    assert config.peering_lifetime({config.PEERING_LIFETIME_ENV: "12"}) == 12
    settings = kopf.OperatorSettings()
    config.apply_settings(settings)
    assert settings.peering.lifetime == config.peering_lifetime()


@pytest.mark.parametrize("raw", ["5", "abc", "12.5"])
def test_peering_lifetime_refuses_nonsense(raw: str) -> None:
    # Below 10 s kopf's renewal (5-10 s before expiry) would leave no margin.
    with pytest.raises(ValueError, match=config.PEERING_LIFETIME_ENV):
        config.peering_lifetime({config.PEERING_LIFETIME_ENV: raw})


def test_peering_crd_is_kopfs() -> None:
    crd = peering.cluster_peering_crd()
    assert crd["metadata"]["name"] == "clusterkopfpeerings.kopf.dev"
    assert crd["spec"]["names"]["kind"] == "ClusterKopfPeering"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1" and "subresources" not in version
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True
