"""What the API server always sets on the objects read through the kubernetes client.

The client's models make every field optional. On the objects the API server
returns, the metadata is always there with the name and uid in it, and so are a
built-in kind's spec and status (structs, never absent; empty at worst).
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from kubernetes.client import V1ObjectMeta

T_co = TypeVar("T_co", covariant=True)


class _Object(Protocol):
    @property
    def metadata(self) -> V1ObjectMeta | None: ...


class _WithSpec(Protocol[T_co]):
    @property
    def spec(self) -> T_co | None: ...


class _WithStatus(Protocol[T_co]):
    @property
    def status(self) -> T_co | None: ...


def metadata_of(obj: _Object) -> V1ObjectMeta:
    assert obj.metadata is not None
    return obj.metadata


def name_of(obj: _Object) -> str:
    name = metadata_of(obj).name
    assert name is not None
    return name


def uid_of(obj: _Object) -> str:
    uid = metadata_of(obj).uid
    assert uid is not None
    return uid


def spec_of(obj: _WithSpec[T_co]) -> T_co:
    assert obj.spec is not None
    return obj.spec


def status_of(obj: _WithStatus[T_co]) -> T_co:
    assert obj.status is not None
    return obj.status
