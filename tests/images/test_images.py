"""The project's images, built for real with podman and run.

The first run builds the Debian base and both images (minutes); later runs
reuse the cache (``$STACKFORGE_IMAGE_CACHE``, by default
``~/.cache/stackforge/images``) and take seconds. Containers run with the
builder's private podman configuration and no network.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackforge_operator.builders import postgres as postgres_builder
from stackforge_operator.builders.common import RUNNER_UID
from stackforge_operator.builders.pooler import POOLER_UID, USERLIST_PROGRAM
from stackforge_operator.builders.postgres import POSTGRES_UID
from stackforge_operator.builders.redis import REDIS_UID
from stackforge_operator.devcluster import images
from stackforge_operator.devcluster.image_podman import Podman

# A cold build (mmdebstrap base included) takes about 5 minutes on 2 cores.
pytestmark = pytest.mark.timeout(2400)


@pytest.fixture(scope="module")
def built() -> dict[str, images.BuiltImage]:
    return {image.reference.split(":")[0]: image for image in images.ensure_images()}


@pytest.fixture(scope="module")
def podman() -> Podman:
    return images.podman_for()


@pytest.fixture
def postgres(built: dict[str, images.BuiltImage]) -> images.BuiltImage:
    return built["stackforge/postgres"]


@pytest.fixture
def pgbouncer(built: dict[str, images.BuiltImage]) -> images.BuiltImage:
    return built["stackforge/pgbouncer"]


@pytest.fixture
def redis(built: dict[str, images.BuiltImage]) -> images.BuiltImage:
    return built["stackforge/redis"]


@pytest.fixture
def operator(built: dict[str, images.BuiltImage]) -> images.BuiltImage:
    return built["stackforge/stackforge-operator"]


def run(podman: Podman, image: images.BuiltImage, *args: str, entrypoint: str | None = None,
        options: tuple[str, ...] = ()) -> str:  # fmt: skip
    """``podman run --rm --network=none``; the container's stdout and stderr (``--version``
    goes to either); fails on a non-zero exit."""
    argv = ["run", "--rm", "--network=none", *options]
    if entrypoint is not None:
        argv += ["--entrypoint", entrypoint]
    result = podman.run(*argv, image.local_reference, *args, check=False, timeout=120)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stderr}"
    return result.stdout + result.stderr


def no_compilers(podman: Podman, image: images.BuiltImage) -> None:
    found = run(podman, image, "-c", "command -v gcc cc c++ clang || true", entrypoint="sh")
    assert found.strip() == ""


def test_operator_image(podman: Podman, operator: images.BuiltImage) -> None:
    assert operator.reference.startswith("stackforge/stackforge-operator:")
    # The entrypoint is the operator's CLI, and it starts on a read-only root.
    assert "usage: stackforge-operator" in run(podman, operator, "--help",
                                               options=("--read-only",))  # fmt: skip
    assert run(podman, operator, "-u", entrypoint="id").strip() == str(RUNNER_UID)
    tools = ("pg_dump", "pg_restore", "psql")
    for tool in tools:
        assert "(PostgreSQL) 15." in run(podman, operator, "--version", entrypoint=tool)
    # The tools themselves, not Debian's Perl wrapper in /usr/bin (18 ms a call).
    found = run(podman, operator, "-c", f"for t in {' '.join(tools)}; do command -v $t; done",
                entrypoint="sh")
    assert found.split() == [f"/usr/lib/postgresql/15/bin/{tool}" for tool in tools]
    assert run(podman, operator, "version", entrypoint="pgbackrest").startswith("pgBackRest 2.")
    no_compilers(podman, operator)


def test_postgres_image_tools(podman: Podman, postgres: images.BuiltImage) -> None:
    assert postgres.reference == "stackforge/postgres:15"
    assert "(PostgreSQL) 15." in run(podman, postgres, "postgres", "--version")
    assert run(podman, postgres, "id", "-u").strip() == str(POSTGRES_UID)
    assert run(podman, postgres, "id", "-g").strip() == str(POSTGRES_UID)
    # The exporter sidecar's command (builders/exporters.py) is on the PATH.
    assert "postgres_exporter" in run(podman, postgres, "postgres_exporter", "--version")
    assert run(podman, postgres, "pgbackrest", "version").startswith("pgBackRest 2.")
    # The operator's programs for its pods (builders/postgres.py) are on the PATH,
    # and the roles script is where the entrypoint runs init scripts from.
    for program in (postgres_builder.UPKEEP_PROGRAM, postgres_builder.CLONE_PROGRAM,
                    postgres_builder.REPLICA_READY_PROGRAM):
        assert run(podman, postgres, "-c", f"command -v {program}", entrypoint="sh").strip() \
            == f"/usr/local/bin/{program}"
    assert run(podman, postgres, "-c", "ls /docker-entrypoint-initdb.d",
               entrypoint="sh").split() == ["10-stackforge-roles.sh"]  # fmt: skip
    no_compilers(podman, postgres)


def test_pgbouncer_image(podman: Podman, pgbouncer: images.BuiltImage) -> None:
    assert pgbouncer.reference == "stackforge/pgbouncer:1.18"
    assert "PgBouncer 1.18" in run(podman, pgbouncer, "--version")
    assert run(podman, pgbouncer, "-u", entrypoint="id").strip() == str(POOLER_UID)
    # The init program writes the auth file where the pooler's volume is.
    written = run(podman, pgbouncer, "-c", f"{USERLIST_PROGRAM} && cat /tmp/users.txt",
                  entrypoint="sh", options=("--read-only", "--tmpfs", "/tmp",
                                            "--env", 'DB_USER=shop', "--env", 'DB_PASSWORD=a"b',
                                            "--env", "USERLIST_FILE=/tmp/users.txt"))  # fmt: skip
    assert '"shop" "a""b"' in written
    no_compilers(podman, pgbouncer)


def test_redis_image(podman: Podman, redis: images.BuiltImage) -> None:
    assert redis.reference == "stackforge/redis:7.0"
    assert "Redis server v=7.0." in run(podman, redis, "redis-server", "--version")
    assert run(podman, redis, "id", "-u").strip() == str(REDIS_UID)
    # The exporter sidecar's command (builders/exporters.py), where upstream has it.
    assert "Redis Metrics Exporter" in run(podman, redis, "--version",
                                           entrypoint="/redis_exporter")
    no_compilers(podman, redis)


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    # The pod's data volume: owned by the server's uid, as fsGroup makes it.
    directory = tmp_path / "data"
    directory.mkdir()
    subprocess.run(["chown", f"{POSTGRES_UID}:{POSTGRES_UID}", str(directory)], check=True)
    yield directory
    subprocess.run(["rm", "-rf", str(directory)], check=False)


def test_postgres_image_initialises_on_a_read_only_root(
    podman: Podman, postgres: images.BuiltImage, volume: Path
) -> None:
    name = f"sf-test-{uuid.uuid4().hex[:8]}"
    podman.run(
        "run", "--detach", "--name", name, "--network=none", "--read-only",
        "--volume", f"{volume}:/var/lib/postgresql/data",
        "--env", "POSTGRES_PASSWORD=secret", "--env", "POSTGRES_DB=shop",
        postgres.local_reference,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # Over TCP, like the StatefulSet's readiness probe: the temporary
            # server of the initialisation listens on the socket only.
            ready = podman.run("exec", name, "pg_isready", "-q", "--host=127.0.0.1", check=False)
            if ready.returncode == 0:
                break
            time.sleep(0.5)
        else:
            logs = podman.run("logs", name, check=False)
            raise AssertionError(f"not ready in 60s:\n{logs.stdout}{logs.stderr}")
        databases = podman.run("exec", name, "psql", "-U", "postgres", "-Atc",
                               "SELECT datname FROM pg_database ORDER BY 1").stdout  # fmt: skip
        assert "shop" in databases.split()
        assert (volume / "pgdata" / "PG_VERSION").read_text().strip() == "15"
    finally:
        podman.run("rm", "--force", "--time", "5", name, check=False)


def test_archives_carry_the_names_pods_resolve_to(built: dict[str, images.BuiltImage]) -> None:
    for image in built.values():
        assert image.archive_path.exists()
        assert images.archive_references(image.archive_path) == [
            images.local_reference(image.reference)
        ]


def test_a_second_build_is_a_cache_hit(
    podman: Podman, built: dict[str, images.BuiltImage]
) -> None:
    for spec in images.default_specs():
        first = built[spec.name]
        again = images.ensure_image(spec)
        if again.inputs != first.inputs:
            # The working tree changed under the test (someone is editing the
            # sources): that rebuild was right; the one after it must hit.
            again = images.ensure_image(spec)
        assert not again.built
        assert again.seconds < 15
        assert podman.label(spec.local_reference, images.INPUTS_LABEL) == again.inputs
