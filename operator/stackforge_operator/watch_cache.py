"""What the operator's watches have seen, answering reads in place of the API server.

Every reconcile used to LIST each child kind, GET the namespace and LIST the
tenants, policies and drills: sixteen requests per tenant per resync, all
answered "unchanged" once a tenant has converged. A :class:`Store` per kind,
filled by an informer (informer.py: LIST once, then WATCH), answers them from
memory instead; ``kube.get`` and ``kube.list_objects`` ask :data:`CACHES` first
and go to the API server only for what no synced store can answer exactly.

A store holds either every object of its kind, or those a label selector
selects (its *scope*: the operator's own children, never every Secret of the
cluster). A store answers a list only when the list's selector implies its
scope, and a get only when it holds the object: an object it lacks may exist
outside the scope, or be too new for its watch, so that get goes to the API
server. kopf's own watch events (which wake the reconciles) and the answers
to the operator's writes are fed in too, newer versions only, so a reconcile
never reads an object older than the event that woke it.

Objects are kept as compact JSON, zlib-compressed (level 1, with a dictionary
made of the kind's first objects: :class:`Packer`) and without
``metadata.managedFields``: a bench tenant's cached objects take 14 KiB with
the stores' keys and index, against about 75 KB of JSON as the API server sends
them (RSS is what bounds thousands of tenants); reading a tenant's children
back costs well under a millisecond, and each read parses a private copy, so no
caller can change what the next one reads.
"""

from __future__ import annotations

import json
import sys
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from stackforge_operator import label_selectors
from stackforge_operator.label_selectors import Requirement, UnsupportedSelectorError

Obj = dict[str, Any]
# Told, outside the store's lock and in whatever thread changed it, the namespace
# whose change count moved (None: possibly every namespace's, unseen: a new LIST;
# EVERY_NAMESPACE: a change seen of a kind that counts everywhere). The operator
# wakes that namespace's settled tenants with it (controller.py): a settled
# tenant has no resync timer to notice a change otherwise.
ChangeListener = Callable[[str | None], None]
# Not a namespace's name (those are DNS labels).
EVERY_NAMESPACE = "*"


class Unknown:
    """A read no store can answer; ask the API server."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = Unknown()


def newer_version(candidate: str, held: str) -> bool:
    """Whether resourceVersion ``candidate`` is later than ``held``.

    Versions are opaque to clients in general; this API server's are etcd
    revisions, decimal integers. Anything else is not compared (False), so a
    write-through never replaces what the watch delivered.
    """
    if not (candidate.isdigit() and held.isdigit()):
        return False
    return int(candidate) > int(held)


def _at_most(candidate: str, held: str) -> bool:
    """Whether ``candidate`` is known to be no later than ``held`` (compared as
    :func:`newer_version` compares, or not at all: False)."""
    return candidate.isdigit() and held.isdigit() and int(candidate) <= int(held)


# Deletions a store remembers (Store._deleted): a write-through racing one
# arrives within seconds, while thousands of deletions come between.
TOMBSTONES_KEPT = 4096
# Namespaces left with nothing whose last change a store keeps (Store._changes).
EMPTIED_KEPT = 4096
# zlib's window: a preset dictionary is read back at most this far.
_DICTIONARY_BYTES = 32 * 1024
# The first objects a Packer packs, up to this many or a window's worth of them,
# become its dictionary.
_SAMPLE_OBJECTS = 16
# A zlib stream's FLG byte has this bit set when it was made with a preset dictionary.
_FDICT = 0x20


def _slim_json(obj: Mapping[str, Any]) -> bytes:
    meta = obj.get("metadata") or {}
    slim = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return json.dumps(slim, separators=(",", ":")).encode()


class Packer:
    """Packs objects of one kind (without ``metadata.managedFields``) as compact
    JSON compressed at level 1, and unpacks private copies of them.

    Each object is compressed on its own (a read unpacks one), and a single
    object of a few KB shares little with itself: zlib alone took a tenant's
    children and pods from about 75 to 28 KB. Objects of one kind share most of their
    text (field names, labels, images, the same defaults), so the first objects a
    packer sees become a preset dictionary for every later one: about 4 KB a
    tenant, measured on a bench tenant's objects. The dictionary never changes
    once made, so what was packed before it (without one) and after it both
    unpack; zlib's header says which.
    """

    def __init__(self) -> None:
        self._dictionary: bytes | None = None
        self._sample: list[bytes] = []
        self._sample_bytes = 0
        self._lock = threading.Lock()

    def pack(self, obj: Mapping[str, Any]) -> bytes:
        raw = _slim_json(obj)
        dictionary = self._dictionary
        if dictionary is None:
            dictionary = self._sampled(raw)
        if not dictionary:
            return zlib.compress(raw, 1)
        compressor = zlib.compressobj(1, zdict=dictionary)
        return compressor.compress(raw) + compressor.flush()

    def _sampled(self, raw: bytes) -> bytes:
        """The dictionary, made once the sample is complete; b"" until then."""
        with self._lock:
            if self._dictionary is None:
                self._sample.append(raw)
                self._sample_bytes += len(raw)
                if (len(self._sample) >= _SAMPLE_OBJECTS
                        or self._sample_bytes >= _DICTIONARY_BYTES):
                    # The end of a dictionary is the nearest to what is compressed.
                    self._dictionary = b"".join(self._sample)[-_DICTIONARY_BYTES:]
                    self._sample = []
            return self._dictionary or b""

    def unpack(self, packed: bytes) -> Obj:
        """A private copy of what :meth:`pack` packed."""
        if packed[1] & _FDICT:
            if self._dictionary is None:
                raise ValueError("packed with a dictionary this packer never made")
            decompressor = zlib.decompressobj(zdict=self._dictionary)
            text = decompressor.decompress(packed) + decompressor.flush()
        else:
            text = zlib.decompress(packed)
        loaded: Obj = json.loads(text)
        return loaded


@dataclass(frozen=True, slots=True)
class _Entry:
    namespace: str
    name: str
    resource_version: str
    packed: bytes


def _entry(obj: Mapping[str, Any], packer: Packer | None) -> _Entry:
    """``packer`` None: a counting store's entry, the metadata alone."""
    meta = obj.get("metadata") or {}
    # Interned: a namespace recurs on every object of a tenant, and most children
    # have the same names in every tenant's namespace.
    return _Entry(sys.intern(str(meta.get("namespace") or "")), sys.intern(str(meta["name"])),
                  str(meta.get("resourceVersion") or ""),
                  b"" if packer is None else packer.pack(obj))


@dataclass
class Store:
    """The objects of one kind within a scope, as the latest LIST and WATCH say."""

    api_version: str
    kind: str
    # "" holds every object of the kind.
    label_selector: str = ""
    # Only counts the changes per namespace (``changes``), from the objects'
    # metadata alone, and answers no read: for a kind whose objects the operator
    # reads but need not hold, such as the customer's Secrets a spec names.
    counts_only: bool = False
    # Its changes count for every namespace: a kind whose objects change what every
    # tenant's reconcile does (CustomResourceDefinitions: an add-on installed).
    counts_everywhere: bool = False
    _scope: tuple[Requirement, ...] = field(init=False)
    # None for a counting store: it keeps the metadata alone.
    _packer: Packer | None = field(init=False)
    # Indexed by namespace, and namespaces by name: a reconcile lists one namespace,
    # and the name check finds a name's holders, without scanning every object
    # (which would make a resync of every tenant cost N x N).
    _namespaces: dict[str, dict[str, _Entry]] = field(default_factory=dict, init=False)
    _names: dict[str, set[str]] = field(default_factory=dict, init=False)
    # Deleted objects' last versions: a write-through of an older version (an apply
    # answered just before the deletion was watched) must not bring them back. The
    # newest TOMBSTONES_KEPT only (a LIST clears them, and with bookmarks one may
    # not come for days: each backup Job, pod and Secret deleted added one).
    _deleted: dict[tuple[str, str], str] = field(default_factory=dict, init=False)
    # The resourceVersion of the last complete LIST ("" unknown).
    _listed_version: str = field(default="", init=False)
    _synced: bool = field(default=False, init=False)
    # When what the store holds for each namespace last changed (the number of
    # the store's change), and how often it may have changed unseen (a new LIST,
    # a broken watch): together they tell a reconcile whether anything it read
    # last time could read differently now. A cluster-scoped object counts for
    # the namespace it names (Namespaces). A namespace left with nothing moves to
    # _emptied, the newest EMPTIED_KEPT of them: counts kept for every namespace
    # ever seen (each drill's sandbox, each CI run's) grew for the operator's
    # life. One forgotten, or never seen, reads as the newest change forgotten
    # (_forgotten): a namespace's token never returns to an earlier value while
    # its content changed in between (empty, then an object, then empty again
    # read 0 twice, and a reconcile that saw the object settled as if nothing).
    _changes: dict[str, int] = field(default_factory=dict, init=False)
    _emptied: OrderedDict[str, int] = field(default_factory=OrderedDict, init=False)
    _forgotten: int = field(default=0, init=False)
    _epoch: int = field(default=0, init=False)
    _total: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    on_change: ChangeListener | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._scope = label_selectors.parse(self.label_selector)
        self._packer = None if self.counts_only else Packer()

    @property
    def synced(self) -> bool:
        return self._synced

    def __len__(self) -> int:
        with self._lock:
            return sum(len(names) for names in self._namespaces.values())

    def _held(self, key: tuple[str, str]) -> _Entry | None:
        return self._namespaces.get(key[0], {}).get(key[1])

    def changes(self, namespace: str) -> tuple[int, int] | None:
        """A value that differs whenever what this store holds for ``namespace``
        may have changed; None while the store is not synced (it knows nothing)."""
        with self._lock:
            if not self._synced:
                return None
            if self.counts_everywhere:
                return self._epoch, self._total
            return self._epoch, self._changes.get(
                namespace, self._emptied.get(namespace, self._forgotten))

    def holds(self, name: str, namespace: str | None) -> bool | None:
        """Whether the object exists (within the scope); None while not synced.
        A counting store knows this much from the metadata it watches."""
        with self._lock:
            if not self._synced:
                return None
            return self._held((namespace or "", name)) is not None

    @staticmethod
    def _counted_in(key: tuple[str, str]) -> str:
        """The namespace whose count a change of the object ``key`` moves (a
        cluster-scoped object's: the one it names, as a Namespace does)."""
        return key[0] or key[1]

    def _changed(self, key: tuple[str, str]) -> None:
        self._total += 1
        counted = self._counted_in(key)
        self._changes[counted] = self._total
        self._emptied.pop(counted, None)

    def _tell(self, key: tuple[str, str] | None) -> None:
        """Tell the listener (never under the lock: it may call back into stores)."""
        if self.on_change is None:
            return
        if key is None:
            self.on_change(None)
        elif self.counts_everywhere:
            self.on_change(EVERY_NAMESPACE)
        else:
            self.on_change(self._counted_in(key))

    def _put(self, entry: _Entry) -> None:
        self._namespaces.setdefault(entry.namespace, {})[entry.name] = entry
        self._names.setdefault(entry.name, set()).add(entry.namespace)
        self._changed((entry.namespace, entry.name))

    def _drop(self, key: tuple[str, str]) -> bool:
        """Whether it held the object."""
        namespace, name = key
        held = self._namespaces.get(namespace)
        if held is None or held.pop(name, None) is None:
            return False
        self._changed(key)
        if not held:
            del self._namespaces[namespace]
        if not namespace or not held:
            # Nothing left that counts for it (see _changes).
            counted = self._counted_in(key)
            self._emptied[counted] = self._changes.pop(counted)
            while len(self._emptied) > EMPTIED_KEPT:
                self._forgotten = max(self._forgotten, self._emptied.popitem(last=False)[1])
        holders = self._names[name]
        holders.discard(namespace)
        if not holders:
            del self._names[name]
        return True

    # --- fed by the informer ------------------------------------------------------

    def pack(self, obj: Mapping[str, Any]) -> _Entry:
        """What the store keeps of ``obj`` (for :meth:`replace_packed`)."""
        return _entry(obj, self._packer)

    def replace(self, objects: Iterable[Mapping[str, Any]], version: str = "") -> None:
        """A complete LIST (at ``version``): exactly these objects exist now."""
        self.replace_packed([self.pack(o) for o in objects], version)

    def replace_packed(self, entries: Iterable[_Entry], version: str = "") -> None:
        """:meth:`replace`, of objects packed as their LIST's pages arrived."""
        with self._lock:
            self._namespaces, self._names, self._changes = {}, {}, {}
            # The epoch moves every token: nothing before it needs telling apart.
            self._emptied, self._forgotten = OrderedDict(), 0
            for entry in entries:
                self._put(entry)
            # The deletions the LIST has seen are in it (their objects absent):
            # what it does not hold is gone as of its version, and a write's late
            # answer of an older version must not bring it back (see _kept).
            self._deleted.clear()
            self._listed_version = version
            self._epoch += 1
            self._synced = True
        self._tell(None)

    def unsynced(self) -> None:
        """The watch broke: answer nothing until the next complete LIST."""
        with self._lock:
            self._synced = False
            self._epoch += 1

    def watched(self, event_type: str, obj: Mapping[str, Any]) -> None:
        entry = _entry(obj, self._packer)
        key = (entry.namespace, entry.name)
        with self._lock:
            if event_type == "DELETED":
                held = self._held(key)
                if held is not None and newer_version(held.resource_version,
                                                      entry.resource_version):
                    # The deletion of an older object of this name, watched after
                    # the answer to the write that made it anew: the new one stays
                    # (dropped, a reconcile meanwhile made it again, new passwords
                    # and all).
                    return
                changed = self._drop(key)
                self._bury(key, entry.resource_version)
            else:
                held = self._held(key)
                # The answer to an own write (``observed``) may come before the
                # watch's older events: kept, a reconcile woken by them would read
                # the object as it was before the write (and rotate again, say).
                changed = held is None or not newer_version(held.resource_version,
                                                            entry.resource_version)
                if changed:
                    self._put(entry)
                    self._deleted.pop(key, None)
        if changed:
            self._tell(key)

    def _bury(self, key: tuple[str, str], version: str) -> None:
        """Remember a deletion (under the lock), forgetting the oldest beyond the bound.
        A counting store never reads them (``observed`` returns first): none kept."""
        if self._packer is None:
            return
        self._deleted.pop(key, None)  # to the end: the newest
        self._deleted[key] = version
        while len(self._deleted) > TOMBSTONES_KEPT:
            del self._deleted[next(iter(self._deleted))]

    def observed(self, event_type: str, obj: Mapping[str, Any]) -> None:
        """An object seen elsewhere than this store's own watch: the API server's
        answer to this operator's write, or kopf's watch event that is about to
        wake a reconcile. Kept when newer than what the store holds, so that the
        reconcile reads at least what woke it (the two watches are not in step)."""
        meta = obj.get("metadata") or {}
        if self._packer is None:
            return  # its own watch counts every change
        if event_type != "DELETED" and not label_selectors.matches(self._scope,
                                                                   meta.get("labels")):
            return
        entry = _entry(obj, self._packer)
        if self._kept(event_type, entry):
            self._tell((entry.namespace, entry.name))

    def _kept(self, event_type: str, entry: _Entry) -> bool:
        """Whether the store changed by an object observed (``observed``)."""
        key = (entry.namespace, entry.name)
        with self._lock:
            if not self._synced:
                return False
            held = self._held(key)
            if event_type == "DELETED":
                if held is not None and not newer_version(held.resource_version,
                                                   entry.resource_version):
                    self._drop(key)
                    self._bury(key, entry.resource_version)
                    return True
                return False
            gone = self._deleted.get(key)
            if gone is not None and not newer_version(entry.resource_version, gone):
                return False
            if held is None and _at_most(entry.resource_version, self._listed_version):
                # Absent from a LIST at least as new: deleted since.
                return False
            if held is None or newer_version(entry.resource_version, held.resource_version):
                self._put(entry)
                return True
            return False

    # --- read by the reconciles ---------------------------------------------------

    def list(self, namespace: str | None, label_selector: str,
             field_selector: str) -> list[Obj] | Unknown:
        packer = self._packer
        if not self._synced or packer is None:
            return UNKNOWN
        try:
            wanted = label_selectors.parse(label_selector)
        except UnsupportedSelectorError:
            return UNKNOWN
        fields = label_selectors.field_equalities(field_selector)
        if fields is None or not label_selectors.implies(wanted, self._scope):
            return UNKNOWN
        if namespace is not None:
            if fields.get("namespace", namespace) != namespace:
                return []
            fields["namespace"] = namespace
        with self._lock:
            entries = self._candidates(fields.get("namespace"), fields.get("name"))
        found = [packer.unpack(e.packed) for e in entries]
        # Every object held is within the scope; only a narrower selector filters.
        # Labels are not kept apart from the packed objects: a narrower list reads
        # a namespace's few objects of the kind, and held apart they took a fifth
        # of a store's memory.
        if all(requirement in self._scope for requirement in wanted):
            return found
        return [o for o in found
                if label_selectors.matches(wanted, (o.get("metadata") or {}).get("labels"))]

    def _candidates(self, namespace: str | None, name: str | None) -> Sequence[_Entry]:
        if namespace is not None:
            held = self._namespaces.get(namespace, {})
            if name is None:
                return list(held.values())
            return [held[name]] if name in held else []
        if name is not None:
            return [self._namespaces[ns][name] for ns in sorted(self._names.get(name, ()))]
        return [e for held in self._namespaces.values() for e in held.values()]

    def get(self, name: str, namespace: str | None) -> Obj | Unknown:
        packer = self._packer
        if not self._synced or packer is None:
            return UNKNOWN
        with self._lock:
            entry = self._held((namespace or "", name))
        # A miss may be an object outside the scope, or one this store's watch has
        # not delivered yet: the API server knows.
        return UNKNOWN if entry is None else packer.unpack(entry.packed)


class Caches:
    """The stores of the running operator, by (apiVersion, kind)."""

    def __init__(self) -> None:
        # Those that answer reads, by (apiVersion, kind); and those that only count.
        # Replaced, never changed in place: reconciles read them in other threads
        # while an add-on's stores come and go (cached_kinds.py).
        self._stores: dict[tuple[str, str], Store] = {}
        self._counters: tuple[Store, ...] = ()
        self._lock = threading.Lock()
        self._on_change: ChangeListener | None = None

    def listen(self, on_change: ChangeListener | None) -> None:
        """Tell ``on_change`` of every change to a store's counts, of the stores held
        now and of those added later (None: tell nobody)."""
        self._on_change = on_change
        for store in self.stores():
            store.on_change = on_change

    def add(self, store: Store) -> None:
        store.on_change = self._on_change
        with self._lock:
            if store.counts_only:
                self._counters = (*self._counters, store)
            else:
                self._stores = {**self._stores, (store.api_version, store.kind): store}

    def remove(self, store: Store) -> None:
        """A store no longer kept current (an add-on's kind, removed): what it held
        is no longer read, and every token it was part of changes."""
        store.on_change = None
        with self._lock:
            self._counters = tuple(s for s in self._counters if s is not store)
            self._stores = {key: s for key, s in self._stores.items() if s is not store}
        listener = self._on_change  # read once: listen(None) may come from another thread
        if listener is not None:
            listener(None)

    def clear(self) -> None:
        with self._lock:
            self._stores, self._counters = {}, ()

    def stores(self) -> list[Store]:
        return [*self._stores.values(), *self._counters]

    def list(self, api_version: str, kind: str, namespace: str | None, label_selector: str,
             field_selector: str) -> list[Obj] | Unknown:
        store = self._stores.get((api_version, kind))
        if store is None:
            return UNKNOWN
        return store.list(namespace, label_selector, field_selector)

    def get(self, api_version: str, kind: str, name: str,
            namespace: str | None) -> Obj | Unknown:
        store = self._stores.get((api_version, kind))
        return UNKNOWN if store is None else store.get(name, namespace)

    def changes(self, namespace: str) -> tuple[tuple[int, int], ...] | None:
        """A value that differs whenever anything the stores hold for ``namespace``
        (or for the Namespace of that name) may have changed; None when there are
        no stores or one is not synced: then nothing can be vouched for."""
        found = [store.changes(namespace) for store in self.stores()]
        if not found:
            return None
        known = [changes for changes in found if changes is not None]
        return tuple(known) if len(known) == len(found) else None

    def holds(self, api_version: str, kind: str, name: str,
              namespace: str | None) -> bool | None:
        """Whether a synced store of the kind holds the object; None: none knows."""
        for store in self.stores():
            if (store.api_version, store.kind) == (api_version, kind):
                held = store.holds(name, namespace)
                if held is not None:
                    return held
        return None

    def written(self, obj: Mapping[str, Any]) -> None:
        """The API server's answer to this operator's own write (the watch catches
        up anyway)."""
        self.observed("MODIFIED", obj)

    def observed(self, event_type: str, obj: Mapping[str, Any]) -> None:
        store = self._stores.get((str(obj.get("apiVersion")), str(obj.get("kind"))))
        if store is not None:
            store.observed(event_type, obj)


# The operator process's stores (handlers.py starts their informers); empty in
# every other process (the plugin, the runners, tests), which read the API.
CACHES: Final = Caches()
