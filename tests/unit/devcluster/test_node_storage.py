"""The real node's volume classes and the pure parts of its provisioner."""

from __future__ import annotations

from stackforge_operator.devcluster.node import storage


def test_only_the_plain_class_is_the_default_and_both_may_grow() -> None:
    plain, sized = storage.storage_class_manifests()
    assert plain["metadata"]["name"] == storage.STORAGE_CLASS
    assert plain["metadata"]["annotations"] == {
        "storageclass.kubernetes.io/is-default-class": "true"}
    assert sized["metadata"]["name"] == storage.SIZED_STORAGE_CLASS
    assert sized["metadata"]["annotations"] == {}
    assert plain["allowVolumeExpansion"] and sized["allowVolumeExpansion"]
    assert plain["provisioner"] == sized["provisioner"] == storage.PROVISIONER


def test_a_size_is_whole_pages_of_bytes() -> None:
    assert storage.size_bytes("256Mi") == 256 * 1024 * 1024
    assert storage.size_bytes("1G") == 1_000_000_000 + 4096 - 1_000_000_000 % 4096
    assert storage.tmpfs_options("64Mi") == f"size={64 * 1024 * 1024},mode=0755"


def test_growth_is_only_a_larger_request() -> None:
    assert storage.growth("2Gi", "1Gi")
    assert storage.growth("1025Mi", "1Gi")
    assert not storage.growth("1Gi", "1Gi")
    assert not storage.growth("1024Mi", "1Gi")
    assert not storage.growth("512Mi", "1Gi")  # a shrink is never done
    assert storage.growth("1Gi", None)
