"""`bench data check`: is each dataset where it should be, complete, and the published size?

``check_dataset`` never raises for bad data: every problem becomes a line in the result, naming
the exact path expected and where to get it. With ``decode=True`` every listed image is also
opened and decoded the way `bench run` reads it (PIL, full decode, RGB), on a thread pool
(PIL releases the GIL while decoding), so a zero-byte file, an HTML page saved as .jpg or a
truncated download is found here rather than in the middle of a run.

Faults of the lists (``datasets_registry/faults.py``: an empty split, an image in train or val
and in test, an image with two labels, repeated entries, classes without a train image) are
found from the paths alone, also with ``--fast``; when the images are decoded, each file's bytes
are hashed in the same read, and a test image with the same bytes as a train or val image under
another name is a warning.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.base.errors import BenchError
from datasets_registry.base import Dataset, DatasetSplits
from datasets_registry.faults import split_faults
from datasets_registry.split_file import outside_problem

SHOW_MISSING = 5  # how many missing image paths to print
DECODE_CHUNK = 64  # images per pool task: few futures even for ImageNet's 1.3M images


@dataclass
class DatasetCheck:
    name: str
    display_name: str
    folder: Path
    found: bool = False  # the dataset folder exists
    counts: dict[str, int] | None = None  # classes, train, val, test as loaded
    problems: list[str] = field(default_factory=list)  # each makes the dataset unusable
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing_images: int = 0
    images_checked: int = 0
    missing_examples: list[str] = field(default_factory=list)
    images_decoded: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, why), all of them
    splits: DatasetSplits | None = None

    @property
    def usable(self) -> bool:
        return self.found and not self.problems

    @property
    def status(self) -> str:
        if not self.found:
            return "MISSING"
        if self.problems:
            return "UNUSABLE"
        return "OK" if not self.warnings else "OK (with warnings)"


def _exists(root: Path, rel: str) -> bool:
    p = root / rel.rstrip("/")
    return p.is_dir() if rel.endswith("/") else p.is_file()


def missing_files(image_dir: Path, rels: list[str]) -> list[str]:
    """The paths in ``rels`` (relative to ``image_dir``) that are not files; one listing per folder."""
    listed: dict[str, set[str] | None] = {}
    missing = []
    for rel in rels:
        folder, _, name = rel.rpartition("/")
        if folder not in listed:
            try:
                with os.scandir(image_dir / folder if folder else image_dir) as it:
                    listed[folder] = {e.name for e in it if e.is_file()}
            except OSError:  # folder missing or not a folder
                listed[folder] = None
        names = listed[folder]
        if names is None or name not in names:
            missing.append(rel)
    return missing


def default_workers() -> int:
    return max(1, min(32, 2 * (os.cpu_count() or 1)))


def decode_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as `bench run` reads images, or None when it decodes."""
    return decode_and_hash(path)[0]


def decode_and_hash(path: Path) -> tuple[str | None, str | None]:
    """(why ``path`` cannot be read as `bench run` reads images or None, a hash of its bytes or
    None when it cannot be read). The bytes are read once, for both: hashing them costs little
    next to decoding."""
    import io

    from PIL import Image

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}", None
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            img.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - any failure of a decoder means "unreadable"
        return f"{type(exc).__name__}: {exc}", digest
    return None, digest


def unreadable_images(image_dir: Path, rels: list[str], workers: int | None = None,
                      desc: str = "", progress: bool = True,
                      digests: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """Decode every image in ``rels`` (relative to ``image_dir``); every one that fails, with
    why, in list order. ``digests``, when given, gets each readable file's content hash by its
    relative path. A progress bar goes to stderr when it is a terminal."""
    from tqdm import tqdm

    image_dir = Path(image_dir)
    chunks = [rels[i:i + DECODE_CHUNK] for i in range(0, len(rels), DECODE_CHUNK)]

    def decode_chunk(chunk):
        return [(rel, *decode_and_hash(image_dir / rel)) for rel in chunk]

    bad = []
    pool = ThreadPoolExecutor(workers or default_workers())
    try:
        with tqdm(total=len(rels), desc=desc, unit="img", disable=None if progress else True,
                  leave=False) as bar:
            for results in pool.map(decode_chunk, chunks):
                bad += [(str(image_dir / rel), why) for rel, why, _ in results if why]
                if digests is not None:
                    digests.update((rel, d) for rel, _, d in results if d is not None)
                bar.update(len(results))
    finally:  # on Ctrl-C, drop the chunks not started instead of decoding them all first
        pool.shutdown(wait=True, cancel_futures=True)
    return bad


def check_dataset(ds: Dataset, data_root: Path, decode: bool = False, workers: int | None = None,
                  progress: bool = False) -> DatasetCheck:
    """What is wrong with ``ds`` under ``data_root``; ``decode`` also decodes every image."""
    data_root = Path(data_root)
    root = ds.root(data_root)
    res = DatasetCheck(ds.name, ds.display_name, root, found=root.is_dir())
    if not _check_layout(ds, root, res):
        return res
    try:
        splits = ds.load(data_root)
    except BenchError as exc:
        if not res.problems:  # else a missing folder above already says it, with its source
            res.problems.append(str(exc))
        return res
    res.splits = splits
    res.counts = {"classes": len(splits.classnames), "train": len(splits.train),
                  "val": len(splits.val), "test": len(splits.test)}
    rels = ds.check_paths(data_root, splits)
    res.images_checked = len(rels)
    outside = [(rel, why) for rel in rels if (why := outside_problem(rel))]
    if outside:  # datasets without a split file (read_split_file checks its own paths)
        rel, why = outside[0]
        res.problems.append(f"{len(outside)} listed image path(s) leave the image folder "
                            f"{splits.image_dir}, e.g. {rel!r}, which {why}; the lists are "
                            f"damaged: get them again from {ds.source}")
        return res
    faults = split_faults(splits)
    res.problems.extend(faults.errors())
    res.warnings.extend(faults.warnings())
    res.notes.extend(faults.notes())
    gone = _check_present(ds, splits, rels, res)
    if decode:
        present = set(gone)
        todo = [r for r in rels if r not in present] if rels else _listed(splits)
        digests: dict[str, str] = {}
        _check_decodes(ds, splits, todo, res, workers, progress, digests)
        res.warnings.extend(same_bytes(splits, digests))
    _check_sizes(ds, res)
    res.notes.extend(ds.check_notes(data_root, splits))
    return res


def _check_layout(ds: Dataset, root: Path, res: DatasetCheck) -> bool:
    """Report a missing dataset folder or required path; True when the lists can be read."""
    if not res.found:
        if root.exists():
            res.found = True
            res.problems.append(f"{root} is not a folder; remove it and put the dataset there")
        else:
            res.problems.append(f"folder {root} not found; create it and add:")
        for rel, source in ds.requirements():
            res.problems.append(f"  {root / rel.rstrip('/')}{'/' if rel.endswith('/') else ''}"
                                f"  <- {source}")
        return False
    for rel, source in ds.requirements():
        if not _exists(root, rel):
            kind = "folder" if rel.endswith("/") else "file"
            res.problems.append(f"missing {kind} {root / rel.rstrip('/')}"
                                f"{'/' if rel.endswith('/') else ''}  <- {source}")
    needs_files = [rel for rel, _ in ds.requirements() if not rel.endswith("/")]
    return all(_exists(root, rel) for rel in needs_files)  # the lists need their files


def _image_source(ds: Dataset) -> str:
    return next((src for rel, src in ds.requirements() if rel.endswith("/")), ds.source)


def _check_present(ds: Dataset, splits: DatasetSplits, rels: list[str],
                   res: DatasetCheck) -> list[str]:
    """Report listed image files that are missing; returns them."""
    if not rels:
        return []
    gone = missing_files(splits.image_dir, rels)
    res.missing_images = len(gone)
    res.missing_examples = [str(splits.image_dir / r) for r in gone[:SHOW_MISSING]]
    if gone:
        res.problems.append(f"{len(gone)} of {len(rels)} image files listed for "
                            f"{ds.display_name} are missing under {splits.image_dir}; "
                            f"get the images again: {_image_source(ds)}")
    return gone


def _check_decodes(ds: Dataset, splits: DatasetSplits, todo: list[str], res: DatasetCheck,
                   workers: int | None, progress: bool, digests: dict[str, str]) -> None:
    res.images_decoded = len(todo)
    res.unreadable = unreadable_images(splits.image_dir, todo, workers,
                                       desc=f"decoding {ds.display_name}", progress=progress,
                                       digests=digests)
    if res.unreadable:
        res.problems.append(f"{len(res.unreadable)} of {len(todo)} image files listed for "
                            f"{ds.display_name} cannot be decoded (empty, truncated or not "
                            f"an image); replace them from {_image_source(ds)}")


def same_bytes(splits: DatasetSplits, digests: dict[str, str]) -> list[str]:
    """Warnings for test images whose file has the same bytes as a train or val image under
    another path (the decoding pass read every file, so their hashes cost nothing more). A
    warning, not an error: the published split files themselves may hold a few such copies, and
    their published numbers were measured with them."""
    if not digests or splits.source is not None:
        return []
    out = []
    for split in ("train", "val"):
        first = {}
        for rel, _ in splits.split(split):
            if rel in digests:
                first.setdefault(digests[rel], rel)
        pairs = [(rel, first[digests[rel]]) for rel, _ in splits.test
                 if rel in digests and first.get(digests[rel], rel) != rel]
        if pairs:
            shown = ", ".join(f"{a!r} = {b!r}" for a, b in pairs[:3])
            more = f" and {len(pairs) - 3} more" if len(pairs) > 3 else ""
            out.append(f"{len(pairs)} test image(s) have the same bytes as a {split} image under "
                       f"another name (test leakage by content), e.g. {shown}{more}")
    return out


def _check_sizes(ds: Dataset, res: DatasetCheck) -> None:
    exp = ds.expected
    if exp is None:
        return
    published = {"classes": exp.classes, "train": exp.train, "val": exp.val, "test": exp.test}
    diff = [k for k in published if res.counts[k] != published[k]]
    if diff:
        res.warnings.append(f"{', '.join(diff)} differ from the published sizes (partial "
                            f"copy, other version or other split file?): results are not "
                            f"comparable with published numbers")


def _listed(splits: DatasetSplits) -> list[str]:
    """Every image path of the three lists, once each, in order."""
    return list(dict.fromkeys(rel for items in (splits.train, splits.val, splits.test)
                              for rel, _ in items))


def _fmt_count(n: int, published: int | None) -> str:
    if published is None or n == published:
        return f"{n:,}"
    return f"{n:,} (published {published:,})"


def format_check(res: DatasetCheck, expected=None) -> str:
    folder = f"{res.folder.name}/"
    lines = [f"{res.display_name} [{res.name}] in {folder}: {res.status}"]
    if res.counts is not None:
        pub = ({"classes": expected.classes, "train": expected.train, "val": expected.val,
                "test": expected.test} if expected is not None else {})
        lines.append("  " + ", ".join(f"{k} {_fmt_count(v, pub.get(k))}"
                                      for k, v in res.counts.items()))
        if res.images_checked and not res.missing_images:
            lines.append(f"  all {res.images_checked:,} listed image files present")
        if res.images_decoded and not res.unreadable:
            lines.append(f"  all {res.images_decoded:,} image files decode")
    for p in res.problems:
        lines.append(f"  error: {p}" if not p.startswith("  ") else f"  {p}")
    for ex in res.missing_examples:
        lines.append(f"    missing: {ex}")
    if res.missing_images > len(res.missing_examples):
        lines.append(f"    ... and {res.missing_images - len(res.missing_examples)} more")
    for path, why in res.unreadable:
        lines.append(f"    cannot decode: {path} ({why})")
    for w in res.warnings:
        lines.append(f"  warning: {w}")
    for n in res.notes:
        lines.append(f"  note: {n}")
    return "\n".join(lines)
