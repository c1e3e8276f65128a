from __future__ import annotations

import kopf

from stackforge_operator import config, informer


def test_own_finalizer_and_storage_prefix() -> None:
    settings = kopf.OperatorSettings()
    config.apply_settings(settings)
    assert settings.persistence.finalizer == "stackforge.io/finalizer"
    progress = settings.persistence.progress_storage
    assert isinstance(progress, kopf.AnnotationsProgressStorage)
    assert progress.prefix == "stackforge.io"
    diffbase = settings.persistence.diffbase_storage
    assert isinstance(diffbase, kopf.AnnotationsDiffBaseStorage)
    assert diffbase.prefix == "stackforge.io"
    assert settings.execution.max_workers == config.MAX_SYNC_WORKERS


def test_kopf_lists_custom_resources_in_pages_like_the_informers() -> None:
    settings = kopf.OperatorSettings()
    assert settings.watching.chunk_size is None  # kopf's default: one unpaged LIST
    config.apply_settings(settings)
    assert settings.watching.chunk_size == informer.LIST_PAGE
