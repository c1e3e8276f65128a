"""devcluster/node/tools.py: what each node program is built from."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from stackforge_operator.devcluster import binary
from stackforge_operator.devcluster.node import services, tools

COREDNS = next(p for p in tools.PROGRAMS if p.name == "coredns")
COREDNS_MODULE = binary.module_dir() / COREDNS.package


def test_coredns_is_built_at_the_version_the_node_names() -> None:
    # The image the node runs is tagged with COREDNS_VERSION; the module pins it.
    required = re.findall(r"^require github\.com/coredns/coredns (v\S+)$",
                          (COREDNS_MODULE / "go.mod").read_text(), re.MULTILINE)
    assert required == [f"v{services.COREDNS_VERSION}"]


def test_coredns_links_every_plugin_the_corefile_names_and_no_other() -> None:
    # The server block's directives: its lines indented once (not a plugin's own block).
    directives = {line.split()[0] for line in services.COREFILE.splitlines()
                  if re.match(r"    [a-z]", line)}
    imported = set(re.findall(r'_ "github\.com/coredns/coredns/plugin/(\w+)"',
                              (COREDNS_MODULE / "main.go").read_text()))
    assert directives == imported == {"errors", "health", "ready", "kubernetes", "cache"}


def test_a_program_in_a_module_of_its_own_is_rebuilt_when_its_go_sum_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "controlplane"
    shutil.copytree(COREDNS_MODULE, copy / COREDNS.package)
    monkeypatch.setenv(binary.MODULE_ENV, str(copy))
    names = [p.name for p in COREDNS.sources()]
    assert names == ["main.go", "go.mod", "go.sum"]
    before = COREDNS.stamp
    go_sum = copy / COREDNS.package / "go.sum"
    go_sum.write_text(go_sum.read_text() + "example.com/x v1.0.0 h1:x=\n")
    assert COREDNS.stamp != before


def test_installed_programs_are_pinned_and_local_ones_are_not() -> None:
    for program in tools.PROGRAMS:
        if program.local:
            assert program.version == "" and program.package.startswith("./"), program
        else:
            assert re.fullmatch(r"v\d+\.\d+\.\d+", program.version), program
