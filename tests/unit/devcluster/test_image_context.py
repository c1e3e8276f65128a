"""What counts as an image's inputs: COPY sources, the ignore file, the digest."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest

from stackforge_operator.devcluster.image_context import (
    IgnoreRules,
    context_files,
    copy_sources,
    inputs_digest,
)
from stackforge_operator.devcluster.images import PROJECT_CATALOG, default_specs, repository_root

CONTAINERFILE = """\
FROM base AS builder
# COPY commented/out /nowhere
COPY pyproject.toml README.md /src/
COPY --chown=1:1 \\
     operator /src/operator
RUN echo hi
FROM base
COPY --from=builder /opt/venv /opt/venv
ADD ["entry point.sh", "/usr/local/bin/"]
COPY --chmod=0755 scripts/*.sh /usr/local/bin/
"""


def test_copy_sources_skip_stages_comments_and_destinations() -> None:
    assert copy_sources(CONTAINERFILE) == [
        "pyproject.toml", "README.md", "operator", "entry point.sh", "scripts/*.sh",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("patterns", "path", "ignored"),
    [
        ([".venv"], ".venv/bin/python", True),
        ([".venv"], "src/.venv/x", False),
        (["**/*.egg-info"], "operator/pkg.egg-info/PKG-INFO", True),
        (["tests/controlplane/bin"], "tests/controlplane/bin/node/ctr", True),
        (["tests/controlplane/bin"], "tests/controlplane/main.go", False),
        (["docs/*.md", "!docs/keep.md"], "docs/keep.md", False),
        (["docs/*.md", "!docs/keep.md"], "docs/other.md", True),
        (["/build/"], "build/out", True),
        ([], "operator/pkg/__pycache__/m.cpython-311.pyc", True),
        ([], "operator/pkg/m.py", False),
    ],
)
def test_ignore_rules(patterns: list[str], path: str, ignored: bool) -> None:
    assert IgnoreRules.from_patterns(patterns).ignored(path) is ignored


def _context(tmp_path: Path) -> Path:
    (tmp_path / "operator" / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "operator" / "pkg" / "m.py").write_text("x = 1\n")
    (tmp_path / "operator" / "pkg" / "__pycache__" / "m.pyc").write_bytes(b"\0")
    (tmp_path / "operator" / "pkg.egg-info").mkdir()
    (tmp_path / "operator" / "pkg.egg-info" / "PKG-INFO").write_text("v1")
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    (tmp_path / "README.md").write_text("readme\n")
    (tmp_path / "unrelated.txt").write_text("not copied\n")
    (tmp_path / ".dockerignore").write_text("**/*.egg-info\n")
    (tmp_path / "Containerfile").write_text(
        "FROM base\nCOPY pyproject.toml README.md /src/\nCOPY operator /src/operator\n"
    )
    return tmp_path


def test_context_files_are_what_the_build_copies(tmp_path: Path) -> None:
    context = _context(tmp_path)
    files = context_files(context, ["pyproject.toml", "README.md", "operator"],
                          IgnoreRules.for_context(context))  # fmt: skip
    assert [f.relative_to(context).as_posix() for f in files] == [
        "README.md", "operator/pkg/m.py", "pyproject.toml",
    ]  # fmt: skip


def test_a_missing_copy_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        context_files(tmp_path, ["missing"], IgnoreRules.from_patterns([]))


def test_digest_follows_copied_files_only(tmp_path: Path) -> None:
    context = _context(tmp_path)
    containerfile = context / "Containerfile"

    def digest(**extra: str) -> str:
        return inputs_digest(containerfile, context, {"base": "b1", **extra})

    first = digest()
    assert digest() == first
    (context / "unrelated.txt").write_text("changed\n")
    (context / "operator" / "pkg" / "__pycache__" / "m.pyc").write_bytes(b"\1")
    (context / "operator" / "pkg.egg-info" / "PKG-INFO").write_text("v2")
    assert digest() == first

    assert digest(base="b2") != first
    (context / "operator" / "pkg" / "m.py").write_text("x = 2\n")
    second = digest()
    assert second != first
    (context / "operator" / "pkg" / "m.py").chmod(0o755)
    assert digest() != second
    containerfile.write_text(containerfile.read_text() + "USER 1\n")
    assert digest() not in (first, second)


def test_the_real_images_inputs(tmp_path: Path) -> None:
    """The operator image hashes the package sources, never caches or the virtualenv."""
    postgres, pgbouncer, redis, kafka, operator = default_specs()
    assert redis.reference == "stackforge/redis:7.0"
    assert postgres.reference == "stackforge/postgres:15"
    assert operator.reference.startswith("stackforge/stackforge-operator:")
    root = repository_root()
    text = operator.containerfile.read_text()
    files = context_files(root, copy_sources(text), IgnoreRules.for_context(root))
    relative = {f.relative_to(root).as_posix() for f in files}
    assert {"pyproject.toml", "README.md",
            "operator/stackforge_operator/cli.py"} <= relative  # fmt: skip
    allowed = ("operator/stackforge_operator/", "images/operator/", "pyproject", "README")
    assert all(p.startswith(allowed) for p in relative), sorted(relative)
    helpers = {"images/operator/builder_requirements.py", "images/operator/constraints.txt"}
    assert helpers <= relative
    assert not any("__pycache__" in p or "egg-info" in p for p in relative)
    pg_files = context_files(postgres.context, copy_sources(postgres.containerfile.read_text()),
                             IgnoreRules.for_context(postgres.context))  # fmt: skip
    # Every program the operator's pods run from the image counts, the init
    # script's directory included.
    assert sorted(f.relative_to(postgres.context).as_posix() for f in pg_files) == [
        "docker-entrypoint.sh", "initdb.d/10-stackforge-roles.sh", "stackforge-archiver.sh",
        "stackforge-clone-replica.sh", "stackforge-pgbackrest.sh", "stackforge-primary-upkeep.sh",
        "stackforge-replica-follows.sh", "stackforge-replica-ready.sh",
        "stackforge-restore.sh"]
    pooler_files = context_files(pgbouncer.context,
                                 copy_sources(pgbouncer.containerfile.read_text()),
                                 IgnoreRules.for_context(pgbouncer.context))  # fmt: skip
    assert [f.name for f in pooler_files] == ["stackforge-pgbouncer-userlist.sh"]
    kafka_files = context_files(kafka.context, copy_sources(kafka.containerfile.read_text()),
                                IgnoreRules.for_context(kafka.context))
    # The class path's pom and the exporter's source are inputs: a new Kafka
    # release or exporter change rebuilds the image.
    assert sorted(f.relative_to(kafka.context).as_posix() for f in kafka_files) == [
        "exporter/KafkaExporter.java", "kafka-tools.sh", "kafka_exporter.sh",
        "log4j2.properties", "pom.xml", "stackforge-kafka-start.sh"]


def test_the_kafka_image_tag_is_the_release_its_pom_resolves() -> None:
    kafka = next(spec for spec in default_specs() if spec.name == "stackforge/kafka")
    pom = ElementTree.parse(kafka.context / "pom.xml").getroot()  # noqa: S314 - our own file
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    assert pom.findtext("m:properties/m:kafka.version", namespaces=namespace) == kafka.tag
    assert PROJECT_CATALOG["kafka-exporter"] == f"stackforge/kafka:{kafka.tag}"
