"""No test image in search: the checks by provenance and by content.

`assert_search_excludes_test` checks the provenance (every sample carries its `source` and `source_index`) and
`find_test_overlap` compares image bytes (it tells a leaked test image from an image the source itself holds twice,
in its train and in its test set). Streamed splits (`ImageFiles`) are compared by file bytes where that is cheap,
else by provenance only (see `find_test_overlap`).
"""


from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .containers import DataError, ImageFiles, ImageSplit
from .prepared import SearchData

__all__ = ["MAX_OVERLAP_READ_BYTES", "ContentOverlap", "assert_search_excludes_test", "find_test_overlap"]

#: `find_test_overlap` reads and hashes files of streamed sources only when the candidates total at most this.
MAX_OVERLAP_READ_BYTES = 1 << 30

log = logging.getLogger(__name__)


def assert_search_excludes_test(search: SearchData, test: ImageSplit | None = None) -> None:
    """No test image in search, by provenance: the search splits come from the training set and are disjoint.

    Raises:
        AssertionError: a search split has source "test", search-train and search-val overlap, or `test` (when
            given) does not have source "test".
    """
    if test is not None and test.source != "test":
        raise AssertionError(f"the test split must have source 'test', got {test.source!r}")
    for name in ("search_train", "search_val"):
        s = getattr(search, name)
        if s.source != "train":
            raise AssertionError(f"{name} must come from the training images, got source {s.source!r}")
    overlap = set(search.search_train.source_index.tolist()) & set(search.search_val.source_index.tolist())
    if overlap:
        raise AssertionError(f"search-train and search-val share {len(overlap)} images")


@dataclass(frozen=True)
class ContentOverlap:
    """Search images whose bytes equal a test image's.

    leaks: (search split, position in it, test source index) where the search image *is* that test image (same
    source and source index). duplicates: (search split, position, search image's (source, source index), test
    source index) where two different source images hold the same pixels: the data set's own duplicates.
    compared: what was compared (`find_test_overlap`): "pixels" (the images' bytes), "file bytes" (the files of
    streamed sources) or "provenance" (source and source index only: no duplicates can be found).
    """

    leaks: list[tuple[str, int, int]]
    duplicates: list[tuple[str, int, tuple[str, int], int]]
    compared: str = "pixels"

    def check(self, allow_duplicates: bool = False) -> None:
        """Raises AssertionError when a test image is in a search split (a leak), and DataError when a search image
        has the same pixels as a test image although it is another image of the source (the data set's own
        duplicates: the search would still see test content), unless `allow_duplicates`."""
        if self.leaks:
            first = ", ".join(f"{s}[{i}] = test[{t}]" for s, i, t in self.leaks[:5])
            raise AssertionError(f"{len(self.leaks)} test images in the search splits: {first}")
        if self.duplicates and not allow_duplicates:
            first = ", ".join(f"{s}[{i}] ({src}[{j}]) = test[{t}]" for s, i, (src, j), t in self.duplicates[:5])
            raise DataError(f"{len(self.duplicates)} search images have the same pixels as a test image (the data "
                            f"set holds them twice): {first}; the search would see test content. Remove the "
                            f"duplicates from the source's training images")


def find_test_overlap(search_splits: Mapping[str, ImageSplit], test: ImageSplit,
                      max_read_bytes: int = MAX_OVERLAP_READ_BYTES) -> ContentOverlap:
    """Hash every image (SHA-256 of its bytes) of `search_splits` and of `test`; list the byte-identical pairs.

    search_splits: name -> ImageSplit, images (N, C, H, W) uint8; test: (M, C, H, W) uint8. A test image present
    k times in the test split yields k entries per search image equal to it. Runs in O(N + M) (~0.2 s for 70k
    28x28 images).

    Streamed splits (`ImageFiles`; compared "file bytes" or "provenance"): nothing is decoded. Two files can only
    be byte-identical when their sizes (known from the scan) are equal, so only the search files whose size some
    test file has, and those test files, are read and hashed, when they total at most `max_read_bytes` (default
    1 GiB). Beyond that (e.g. an ImageNet search against its 50k val images), or when search and test are not both
    streamed (e.g. CIFAR-10 search -> ImageNet test: a 32x32 array is never a JPEG file), leaks are found by
    provenance alone (a search sample with the test split's source and one of its source indices) and no
    duplicates are reported; a warning is logged in the first case. File bytes miss re-encoded or resized
    copies, as pixel bytes miss shifted ones.

    Raises:
        DataError: a candidate file cannot be read.
    """
    if any(isinstance(s.images, ImageFiles) for s in (test, *search_splits.values())):
        return _file_overlap(search_splits, test, max_read_bytes)
    by_hash: dict[bytes, list[int]] = {}
    for j, img in enumerate(test.images.contiguous().numpy()):
        by_hash.setdefault(hashlib.sha256(img.tobytes()).digest(), []).append(j)
    test_index = test.source_index.tolist()
    leaks, duplicates = [], []
    for name, split in search_splits.items():
        index = split.source_index.tolist()
        for i, img in enumerate(split.images.contiguous().numpy()):
            for j in by_hash.get(hashlib.sha256(img.tobytes()).digest(), ()):
                if split.source == test.source and index[i] == test_index[j]:
                    leaks.append((name, i, test_index[j]))
                else:
                    duplicates.append((name, i, (split.source, index[i]), test_index[j]))
    return ContentOverlap(leaks, duplicates)


def _file_sha256(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").digest()
    except OSError as err:
        raise DataError(f"{path}: unreadable ({type(err).__name__}: {err})") from None


def _file_overlap(search_splits: Mapping[str, ImageSplit], test: ImageSplit, max_read_bytes: int) -> ContentOverlap:
    """`find_test_overlap` where a split is streamed: provenance leaks always; duplicates by the bytes of the
    same-size files when search and test are both streamed and the candidates total <= max_read_bytes."""
    test_index = test.source_index.tolist()
    position = {}  # test source index -> positions in the test split
    for j, t in enumerate(test_index):
        position.setdefault(t, []).append(j)
    leaks = [(name, i, test_index[j]) for name, split in search_splits.items() if split.source == test.source
             for i, t in enumerate(split.source_index.tolist()) for j in position.get(t, ())]
    splits = {k: s for k, s in search_splits.items() if isinstance(s.images, ImageFiles)}
    if not isinstance(test.images, ImageFiles) or len(splits) < len(search_splits):
        return ContentOverlap(leaks, [], "provenance")
    test_sizes = test.images.sizes
    candidates = {k: np.flatnonzero(np.isin(s.images.sizes, test_sizes)) for k, s in splits.items()}
    hit_sizes = np.concatenate([s.images.sizes[candidates[k]] for k, s in splits.items()] + [np.zeros(0, np.int64)])
    test_candidates = np.flatnonzero(np.isin(test_sizes, hit_sizes))
    total = int(hit_sizes.sum()) + int(test_sizes[test_candidates].sum())
    if total > max_read_bytes:
        log.warning("test overlap by provenance only: comparing file bytes would read %.1f GiB of same-size files "
                    "(limit %.1f GiB)", total / 2**30, max_read_bytes / 2**30)
        return ContentOverlap(leaks, [], "provenance")
    by_hash: dict[bytes, list[int]] = {}
    for j in test_candidates.tolist():
        by_hash.setdefault(_file_sha256(test.images.path(j)), []).append(j)
    duplicates = []
    for name, split in splits.items():
        index = split.source_index.tolist()
        for i in candidates[name].tolist():
            for j in by_hash.get(_file_sha256(split.images.path(i)), ()):
                if not (split.source == test.source and index[i] == test_index[j]):  # that one is a leak
                    duplicates.append((name, i, (split.source, index[i]), test_index[j]))
    return ContentOverlap(leaks, duplicates, "file bytes")
