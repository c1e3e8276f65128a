"""The real node's configuration, built by pure functions: checked without a node."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tomllib
from pathlib import Path

import pytest

from stackforge_operator.devcluster.node import network, realnode, runtime, services
from stackforge_operator.devcluster.node.agent import KubeletPaths, kubelet_configuration
from stackforge_operator.devcluster.node.scratch_image import ScratchImage, write_archive

NET = network.NodeNetwork()


def test_pods_join_the_prepared_bridge_with_leases_under_the_run_directory(
        tmp_path: Path) -> None:
    config = network.conflist(NET, tmp_path / "ipam")
    bridge = config["plugins"][0]  # type: ignore[index]
    assert bridge["bridge"] == NET.bridge and bridge["isGateway"] is True
    assert bridge["ipam"]["ranges"] == [[{"subnet": NET.pod_subnet, "gateway": NET.node_ip}]]
    assert bridge["ipam"]["dataDir"] == str(tmp_path / "ipam")
    # No masquerading: nothing leaves the host, and no NAT rules to clean up.
    assert bridge["ipMasq"] is False


def test_local_images_are_named_under_localhost_unless_they_name_a_registry() -> None:
    assert runtime.local_reference("stackforge/postgres:15") == "localhost/stackforge/postgres:15"
    assert runtime.local_reference("busybox:1") == "localhost/busybox:1"
    assert runtime.local_reference("mirror.internal:5000/a/b:1") == "mirror.internal:5000/a/b:1"
    assert runtime.local_reference("localhost/a:1") == "localhost/a:1"


def test_containerd_keeps_its_files_under_its_directory(tmp_path: Path) -> None:
    paths = runtime.RuntimePaths(tmp_path / "node", store=tmp_path / "kept")
    parsed = tomllib.loads(runtime.containerd_config(paths, pause_image="x/pause:1"))
    assert parsed["version"] == 4
    # Images and their layers are kept between runs; everything else is the run's.
    assert parsed["root"].startswith(str(tmp_path / "kept"))
    assert parsed["state"].startswith(str(tmp_path / "node"))
    servers = parsed["plugins"]
    assert servers["io.containerd.server.v1.grpc"]["address"] == str(paths.socket)
    assert servers["io.containerd.server.v1.ttrpc"]["address"].startswith(str(tmp_path))
    cri = parsed["plugins"]["io.containerd.cri.v1.runtime"]
    assert cri["cni"]["conf_dir"] == str(paths.cni_conf_dir)
    runc_root = cri["containerd"]["runtimes"]["runc"]["options"]["Root"]
    assert runc_root.startswith(str(tmp_path / "node"))
    options = cri["containerd"]["runtimes"]["runc"]["options"]
    assert options["SystemdCgroup"] is False and options["BinaryName"].endswith("runc")
    images = parsed["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == "x/pause:1"
    assert images["snapshotter"] == "overlayfs"


def test_kubelet_writes_nothing_outside_the_node_directory(tmp_path: Path) -> None:
    config = kubelet_configuration(
        network=NET, paths=KubeletPaths(tmp_path), runtime_endpoint="unix:///x.sock",
        client_ca=tmp_path / "ca.crt", serving_cert=tmp_path / "s.crt",
        serving_key=tmp_path / "s.key", port=1, healthz_port=2)
    for key in ("podLogsDir", "volumePluginDir", "resolvConf"):
        assert str(config[key]).startswith(str(tmp_path)), key
    assert config["cgroupDriver"] == "cgroupfs" and config["failCgroupV1"] is False
    assert config["clusterDNS"] == [NET.dns_service_ip]
    assert config["authentication"]["anonymous"]["enabled"] is False


def test_kube_proxy_leaves_conntrack_and_localnet_alone(tmp_path: Path) -> None:
    config = services.kube_proxy_configuration(
        network=NET, kubeconfig=tmp_path / "k", node_name="n", healthz_port=1, metrics_port=2)
    assert config["conntrack"]["maxPerCore"] == 0 and config["conntrack"]["min"] == 0
    assert config["iptables"]["localhostNodePorts"] is False


def test_dns_answers_where_tenant_policies_allow_it() -> None:
    documents = services.dns_manifests(NET)
    service = next(d for d in documents if d["kind"] == "Service")
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    # Tenant NetworkPolicies allow DNS to kube-system's k8s-app=kube-dns pods on 53.
    assert service["metadata"]["namespace"] == "kube-system"
    assert service["spec"]["clusterIP"] == NET.dns_service_ip
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels == {"k8s-app": "kube-dns"}
    ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert {p["containerPort"] for p in ports} == {53}


def test_scratch_image_is_a_consistent_deterministic_oci_layout(tmp_path: Path) -> None:
    binary = tmp_path / "tool"
    binary.write_bytes(b"\x7fELF pretend")
    image = ScratchImage("example/tool:1", binary, "/bin/tool", ("/bin/tool", "-x"))
    first = write_archive(image, tmp_path / "a.tar")
    assert write_archive(image, tmp_path / "b.tar") == first
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    with tarfile.open(tmp_path / "a.tar") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    for name, content in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(content).hexdigest() == name.rsplit("/", 1)[1]
    index = json.loads(files["index.json"])
    manifest_digest = index["manifests"][0]["digest"]
    assert manifest_digest == first
    manifest = json.loads(files["blobs/sha256/" + manifest_digest.split(":")[1]])
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    assert config["config"]["Entrypoint"] == ["/bin/tool", "-x"]
    layer = files["blobs/sha256/" + manifest["layers"][0]["digest"].split(":")[1]]
    with tarfile.open(fileobj=io.BytesIO(layer)) as layer_tar:
        member = layer_tar.getmember("bin/tool")
        assert member.mode == 0o755
        assert layer_tar.extractfile(member).read() == b"\x7fELF pretend"  # type: ignore[union-attr]


def test_netfilter_tables_compare_regardless_of_chain_order_and_counters() -> None:
    from stackforge_operator.devcluster.node.hoststate import canonical_table

    created = ("table ip filter {\n\tchain B {\n\t\tcounter packets 3 bytes 4 accept\n\t}\n"
               "\tchain A {\n\t\tdrop\n\t}\n}\n")
    restored = ("table ip filter {\n\tchain A {\n\t\tdrop\n\t}\n"
                "\tchain B {\n\t\tcounter packets 0 bytes 0 accept\n\t}\n}\n")
    assert canonical_table(created) == canonical_table(restored)
    reordered_rules = ("table ip filter {\n\tchain A {\n\t\taccept\n\t\tdrop\n\t}\n}\n")
    assert canonical_table(reordered_rules) != canonical_table(
        "table ip filter {\n\tchain A {\n\t\tdrop\n\t\taccept\n\t}\n}\n")


def test_a_run_directory_too_deep_for_the_sockets_is_refused_before_any_change(
        tmp_path: Path) -> None:
    deep = tmp_path / ("d" * (realnode.UNIX_PATH_MAX - len(str(tmp_path))))
    node = realnode.RealNode(deep)
    with pytest.raises(realnode.RealNodeError, match="use a shorter run directory"):
        node.prepare_host()
    assert not deep.exists()  # refused before making anything
    shallow = realnode.RealNode(Path("/tmp/pytest-of-root/pytest-999/popen-gw1/dev0"))
    assert all(len(str(p)) <= realnode.UNIX_PATH_MAX for p in shallow.sockets())


def test_a_relative_run_directory_gives_absolute_endpoints(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`dev --run-dir run` made unix://run/node/containerd/containerd.sock, whose
    "run" a URL parser reads as a host: the kubelet never reached containerd, and
    the host's restore, matching mounts by absolute path, unmounted nothing."""
    monkeypatch.chdir(tmp_path)
    node = realnode.RealNode(Path("run"))
    assert node.dir == tmp_path / "run" / "node"
    assert node.runtime_paths.endpoint == f"unix://{tmp_path}/run/node/containerd/containerd.sock"
