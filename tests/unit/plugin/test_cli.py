"""`kubectl stackforge`'s commands, options and exit codes without a cluster (the
commands against one: tests/cluster/test_plugin.py, tests/realnode/test_plugin.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stackforge_operator.models.tenant import StackForgeTenantSpec
from stackforge_operator.plugin import api, cli

PLUGIN = Path(sys.executable).parent / "kubectl-stackforge"


def test_the_plugin_is_installed_and_its_help_lists_every_command() -> None:
    ran = subprocess.run([str(PLUGIN), "--help"], capture_output=True, text=True, check=False)
    assert ran.returncode == 0, ran.stderr
    for command in ("status", "health", "backup", "drill", "restore", "isolate", "unisolate",
                    "psql", "report"):
        assert f"    {command} " in ran.stdout, command
    assert "--kubeconfig" in ran.stdout and "--context" in ran.stdout


def test_wrong_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        cli.main(["status", "acme", "-o", "table"])
    assert ended.value.code == 2
    assert "invalid choice: 'table'" in capsys.readouterr().err


def test_an_unreachable_cluster_exits_1_with_one_line(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n"
        "clusters: [{name: gone, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: gone, context: {cluster: gone, user: u}}]\n")
    assert cli.main(["--kubeconfig", str(kubeconfig), "status"]) == 1
    assert capsys.readouterr().err.startswith("error: cannot reach the cluster")


def test_a_tenant_with_fields_the_plugin_does_not_know_exits_1_with_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A plugin older than the operator's CRDs ended in a traceback."""
    def newer_spec(*_: object) -> int:
        StackForgeTenantSpec.model_validate({"tier": "Starter", "someNewField": 1})
        return 0

    monkeypatch.setattr(cli, "_status", newer_spec)
    monkeypatch.setattr(cli, "Cluster", lambda *_: None)  # no connection needed
    assert cli.main(["status"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: this plugin cannot read the tenant (someNewField)"), err
    assert "Traceback" not in err and err.count("\n") == 1


def test_an_api_server_that_never_answers_ends_the_command_at_the_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The client sets no timeout: a stalled connection hung every command."""
    monkeypatch.setattr(api, "REQUEST_TIMEOUT_SECONDS", 0.5)
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        kubeconfig = tmp_path / "config"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:"
            f"{listener.getsockname()[1]}'}}}}]\n"
            "users: [{name: u, user: {token: t}}]\n"
            "contexts: [{name: c, context: {cluster: c, user: u}}]\n")
        started = time.monotonic()
        assert cli.main(["--kubeconfig", str(kubeconfig), "status"]) == 1
        assert time.monotonic() - started < 20
        assert capsys.readouterr().err.startswith("error: cannot reach the cluster")
    finally:
        listener.close()
