from __future__ import annotations

import pytest

from stackforge_operator.cli import build_parser


def test_run_defaults_to_clusterwide_standalone_with_liveness() -> None:
    args = build_parser().parse_args(["run"])
    assert args.namespace is None
    assert args.peering is None
    assert args.liveness.endswith("/healthz")


def test_run_accepts_namespaces_and_peering() -> None:
    args = build_parser().parse_args(
        ["run", "-n", "a", "--namespace", "b", "--peering", "stackforge", "--priority", "100"]
    )
    assert args.namespace == ["a", "b"]
    assert (args.peering, args.priority) == ("stackforge", 100)


def test_a_command_is_required() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([])
