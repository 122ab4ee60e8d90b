"""Find images under a folder, recognise them by content, decode them safely, record what was skipped.

Scanning reads headers only (fast); a file that passes the header check but fails to decode fully
(a truncated JPEG) is skipped later, at embedding time, with the decoder's reason. Videos are the
exception: each new or changed one is decoded once, here, into key-frames (video.py) that are
catalogued as images of their own (path ``VIDEO#t=SECONDS``) with their JPEG kept in the workspace.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from stat import S_ISBLK, S_ISCHR, S_ISDIR, S_ISFIFO, S_ISREG, S_ISSOCK

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import ScanConfig
from .errors import NoImages
from .store import ImageRecord, ScannedFile, Workspace
from .store.records import clock
from .store.workspace import WORKSPACE_DIRNAME
from .video import INSTALL_HINT, KeyFrameExtractor, decoder_available, video_format

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

# Pillow format names we accept; MPO is the multi-picture JPEG some cameras write.
IMAGE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF"})
_HASH_CHUNK = 1 << 20
_SAVE_EVERY = 500


@dataclass(frozen=True)
class ScanResult:
    """The images found under ``root`` that can be used, and those skipped with their reasons."""

    root: str
    images: list[ImageRecord]
    skipped: list[ImageRecord]
    n_new: int
    videos: list[ImageRecord] = field(default_factory=list)  # video files; their key-frames are in images


def scan(root: str | os.PathLike[str], workspace: Workspace, config: ScanConfig = ScanConfig(),
         progress: Progress | None = None) -> ScanResult:
    """Walk ``root`` recursively and bring the catalogue up to date.

    Unchanged files (same size and modification time) are not read again. Files that vanished
    since the last scan are marked missing. Raises NoImages when ``root`` does not exist.
    """
    root_path = Path(root).expanduser().resolve()
    if not root_path.exists():
        raise NoImages(f"{root_path} does not exist. Give a folder (or a file) that holds images.")
    refused: dict[str, str] = {}  # entries the walk does not read, with the reason (the scan policy)
    paths = list(_walk(root_path, config.follow_symlinks, refused))
    # Names that are not UTF-8 cannot be stored (SQLite text is UTF-8): they are kept under a
    # printable form of their name, as skipped, with the way out.
    badly_named = {_printable(p): p for p in paths if _not_utf8(p)}
    paths = [_printable(p) if _not_utf8(p) else p for p in paths]
    known = workspace.known_files(str(root_path))
    video_params = config.video_params()
    todo = [p for p in paths if (_still_to_record(p, known.get(p), refused) if p in refused else
                                 _changed(p, known.get(p), video_params) or _refused_now(known.get(p), config))]
    log.info("scan %s: %d files, %d new or changed", root_path, len(paths), len(todo))
    done = len(paths) - len(todo)
    if progress:
        progress(done, len(paths))
    batch: list[ScannedFile] = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        examine = (lambda p: (_badly_named(p, badly_named[p]), [], {}) if p in badly_named  # noqa: E731
                   else (_not_read(p, refused[p]), [], {}) if p in refused else _examine(p, config))
        for scanned, items, jpegs in pool.map(examine, todo):
            previous = known.get(scanned.path)
            if scanned.video_params is not None or (previous is not None and previous.video_params is not None):
                workspace.save_video(scanned, items, jpegs)  # at once: a video may have taken minutes
            else:
                batch.append(scanned)
            done += 1
            if len(batch) >= _SAVE_EVERY:
                workspace.save_scanned(batch)
                batch = []
            if progress:
                progress(done, len(paths))
    workspace.save_scanned(batch)
    seen = set(paths)
    workspace.mark_missing(p for p, r in known.items()
                           if (r.source_path or p) not in seen and r.status != "missing")
    records = workspace.images(paths)
    videos = [r for r in records if r.status == "video"]
    records = sorted(records + workspace.video_items([r.path for r in videos]),
                     key=lambda r: (r.source_path or r.path, -1.0 if r.timestamp is None else r.timestamp))
    return ScanResult(
        root=str(root_path),
        images=[r for r in records if r.status == "ok"],
        skipped=[r for r in records if r.status == "skipped"],
        n_new=len(todo),
        videos=videos,
    )


def _walk(root: Path, follow_symlinks: bool, refused: dict[str, str]) -> Iterator[str]:
    """Every entry under ``root`` in a stable order (sorted names), following the scan policy:

    - a link whose target is inside ``root`` is read (a link to a folder inside is not walked: its
      files are found where they are); a link leading outside ``root`` is not read unless
      ``follow_symlinks`` (it might be /etc/passwd or another user's files);
    - hidden files and folders (names starting with ".") are not read: folders of tools (.git,
      caches) and system files, not photos;
    - the workspace folder is ours and is passed over silently.
    Entries not read are yielded too and their reasons put in ``refused``, so the scan reports them."""
    if root.is_file():
        yield str(root)
        return
    real_root = os.path.realpath(root)
    visited: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=follow_symlinks):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in visited:  # a symlink loop when following links
            dirs[:] = []
            continue
        visited.add((stat.st_dev, stat.st_ino))
        walked = []
        for name in sorted(dirs):
            if name == WORKSPACE_DIRNAME:
                continue
            path = os.path.join(folder, name)
            reason = _refusal(path, name, real_root, follow_symlinks, True)
            if reason is not None:
                refused[path] = reason
                yield path
            elif follow_symlinks or not os.path.islink(path):
                walked.append(name)
        dirs[:] = walked
        for name in sorted(files):
            path = os.path.join(folder, name)
            reason = _refusal(path, name, real_root, follow_symlinks, False)
            if reason is not None:
                refused[path] = reason
            yield path


def _refusal(path: str, name: str, real_root: str, follow_symlinks: bool, is_folder: bool) -> str | None:
    """Why the walk does not read this entry, or None."""
    what = "folder" if is_folder else "file"
    if name.startswith("."):
        return (f"a hidden {what} (its name starts with '.'): not read; rename it to include it"
                + ("; its files were not scanned" if is_folder else ""))
    if os.path.islink(path) and not follow_symlinks:
        target = os.path.realpath(path)
        if not (target == real_root or target.startswith(real_root.rstrip(os.sep) + os.sep)):
            return (f"a link to a {what} outside the scanned folder ({target}): not followed; pass "
                    "--follow-links to include it")
    return None


def _not_read(path: str, reason: str, shown: str | None = None) -> ScannedFile:
    """The catalogue row (under ``shown``, else ``path``) of an entry skipped without being read."""
    try:
        stat = os.lstat(path)
        size, mtime = stat.st_size, stat.st_mtime_ns
    except OSError:
        size, mtime = 0, 0
    return _skipped(shown or path, size, mtime, None, reason)


def _not_utf8(path: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in path)  # os.fsdecode's escapes for undecodable bytes


def _printable(path: str) -> str:
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _badly_named(printable: str, path: str) -> ScannedFile:
    return _not_read(path, "the file name is not valid UTF-8, so it cannot be catalogued; rename the file "
                           "(e.g. `convmv -f latin1 -t utf8 --notest FILE`) and scan again", shown=printable)


def _changed(path: str, record: ImageRecord | None, video_params: str | None = None) -> bool:
    # Scan-stage verdicts depend on the settings (--min-side, max_pixels), so they are re-checked.
    if record is None or record.status == "missing" or record.skip_stage == "scan":
        return True
    if record.video_params is not None and record.video_params != video_params:
        return True  # key-frames chosen with other settings
    try:
        stat = os.stat(path)
    except OSError:
        return True
    return stat.st_size != record.size or stat.st_mtime_ns != record.mtime_ns


def _still_to_record(path: str, record: ImageRecord | None, refused: dict[str, str]) -> bool:
    """Whether an entry the walk refused needs its row written (new, or refused for another reason):
    a hidden file or an outside link already recorded so is not rewritten by every scan."""
    return record is None or record.status != "skipped" or record.skip_reason != refused[path]


def _refused_now(record: ImageRecord | None, config: ScanConfig) -> bool:
    """Whether a file catalogued as usable fails this scan's size settings (a higher --min-side, a
    lower max_pixels): it is examined again, so every scan setting applies to every run."""
    if record is None or record.status != "ok" or record.width is None or record.height is None:
        return False
    return min(record.width, record.height) < config.min_side or record.width * record.height > config.max_pixels


def sniff(path: str, config: ScanConfig = ScanConfig()) -> ScannedFile:
    """Read a file's header: its format and size, or the reason it cannot be used."""
    try:
        stat = os.stat(path)
    except OSError as error:
        return _skipped(path, 0, 0, None, f"cannot read the file: {error.strerror or error}")
    size, mtime = stat.st_size, stat.st_mtime_ns
    if not S_ISREG(stat.st_mode):  # never opened: reading a FIFO waits for a writer forever
        return _skipped(path, size, mtime, None, f"not a regular file but {_file_kind(stat.st_mode)}; only files "
                        "are read")
    if size == 0:
        return _skipped(path, size, mtime, None, "empty file (0 bytes)")
    try:
        content_hash = hash_file(path)
    except OSError as error:
        return _skipped(path, size, mtime, None, f"cannot read the file: {error.strerror or error}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                fmt, (width, height) = image.format, image.size
    except Image.DecompressionBombError as error:
        return _skipped(path, size, mtime, content_hash,
                        f"declared size is so large it looks like a decompression bomb ({error})")
    except UnidentifiedImageError:
        with open(path, "rb") as handle:
            container = video_format(handle.read(64))
        if container is None:
            return _skipped(path, size, mtime, content_hash, _not_an_image_reason(path))
        if not decoder_available():  # a scan-stage skip: re-checked once PyAV is installed
            return _skipped(path, size, mtime, content_hash, f"a video ({container}), but PyAV, which decodes "
                            f"videos, is not installed: {INSTALL_HINT}", fmt=container)
        return ScannedFile(path, size, mtime, content_hash, container, None, None, "video",
                           video_params=config.video_params())
    except Exception as error:  # Pillow raises many types on hostile headers
        return _skipped(path, size, mtime, content_hash, f"unreadable image header: {error}")
    if fmt not in IMAGE_FORMATS:
        return _skipped(path, size, mtime, content_hash, f"unsupported image format {fmt}",
                        fmt=fmt, width=width, height=height)
    if min(width, height) < config.min_side:
        return _skipped(path, size, mtime, content_hash,
                        f"too small: {width}×{height} px (the minimum side is {config.min_side} px; "
                        "lower --min-side to include it)", fmt=fmt, width=width, height=height)
    if width * height > config.max_pixels:
        return _skipped(path, size, mtime, content_hash,
                        f"too large: {width}×{height} px is over the limit of {config.max_pixels:,} px "
                        "(raise ScanConfig.max_pixels to include it)", fmt=fmt, width=width, height=height)
    return ScannedFile(path, size, mtime, content_hash, fmt, width, height, "ok")


def _file_kind(mode: int) -> str:
    return ("a named pipe (FIFO)" if S_ISFIFO(mode) else "a socket" if S_ISSOCK(mode)
            else "a device" if S_ISCHR(mode) or S_ISBLK(mode) else "a folder" if S_ISDIR(mode) else "not a file")


def _examine(path: str, config: ScanConfig) -> tuple[ScannedFile, list[ScannedFile], dict[str, bytes]]:
    """Sniff a file; a video is also decoded into key-frames: (its row, key-frame rows, JPEGs by hash)."""
    scanned = sniff(path, config)
    if scanned.status != "video":
        return scanned, [], {}
    return extract_keyframes(scanned, config)


def extract_keyframes(video: ScannedFile, config: ScanConfig = ScanConfig()
                      ) -> tuple[ScannedFile, list[ScannedFile], dict[str, bytes]]:
    """Decode a sniffed video into catalogue rows: the video's own (skipped when no frame could be
    decoded; the error noted when decoding stopped early), one per key-frame, and, after a decoding
    error, a skipped row ``VIDEO#t=SECONDS-`` for the rest of the video, with the error as its reason."""
    found = KeyFrameExtractor.from_config(config).extract(video.path)
    items: list[ScannedFile] = []
    jpegs: dict[str, bytes] = {}
    for key in found.keyframes:
        buffer = io.BytesIO()
        key.image.save(buffer, "JPEG", quality=90)
        jpeg = buffer.getvalue()
        content_hash = hash_bytes(jpeg)
        jpegs[content_hash] = jpeg
        items.append(ScannedFile(f"{video.path}#t={key.timestamp:.3f}", len(jpeg), video.mtime_ns, content_hash,
                                 "JPEG", key.image.width, key.image.height, "ok", source_path=video.path,
                                 timestamp=key.timestamp, shot=key.shot))
    video = replace(video, width=found.width, height=found.height)
    if not items:
        return replace(video, status="skipped", skip_stage="video",
                       skip_reason=f"no frame could be decoded: {found.error or 'the video is empty'}"), [], {}
    if found.error is not None:
        at = found.error_at or 0.0
        items.append(ScannedFile(f"{video.path}#t={at:.3f}-", 0, video.mtime_ns, None, video.format, None, None,
                                 "skipped", "video", f"{found.error}; the {len(items)} key-frames before "
                                 f"{clock(at)} are kept", source_path=video.path, timestamp=at))
        video = replace(video, skip_stage="video", skip_reason=found.error)
    return video, items, jpegs


def _skipped(path: str, size: int, mtime: int, content_hash: str | None, reason: str, *,
             fmt: str | None = None, width: int | None = None, height: int | None = None) -> ScannedFile:
    return ScannedFile(path, size, mtime, content_hash, fmt, width, height, "skipped", "scan", reason)


def _not_an_image_reason(path: str) -> str:
    with open(path, "rb") as handle:
        head = handle.read(512)
    kind = "text" if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "binary data"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        kind = "HTML"
    elif head.startswith(b"%PDF"):
        kind = "a PDF"
    suffix = Path(path).suffix.lower()
    named = f" (named {suffix})" if suffix else ""
    return f"not an image: the content is {kind}{named}"


def hash_bytes(data: bytes) -> str:
    """Content hash (BLAKE2b, 128 bits, hex) of bytes: the same as ``hash_file`` of a file holding them."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def hash_file(path: str) -> str:
    """Content hash (BLAKE2b, 128 bits, hex) of a file's bytes."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class DecodeBudget:
    """At most ``limit`` bytes of decoded pixels in flight across the threads of a process.

    A 519 KB PNG may declare 13,000 x 13,000 pixels (below Pillow's bomb limit): half a GB once
    decoded, more while it is converted. Four of them decoded at once by the embedding threads took
    a process from 0.4 to 3 GB. Each decode first reserves its size here and waits while others
    hold the budget; one image larger than the whole budget still decodes, alone."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self.peak = 0  # the most bytes ever reserved at once (tests and benchmarks read it)
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        nbytes = min(nbytes, self.limit)
        with self._changed:
            while self.held and self.held + nbytes > self.limit:
                self._changed.wait()
            self.held += nbytes
            self.peak = max(self.peak, self.held)
        try:
            yield
        finally:
            with self._changed:
                self.held -= nbytes
                self._changed.notify_all()


# 768 MB: one image at Pillow's own limit (179 M pixels, RGB) fits; two such never decode together.
DECODE_BUDGET = DecodeBudget(768 * 2**20)
# Images above this many pixels that cannot be decoded at a reduced scale (PNG, TIFF, WebP …) are
# shrunk right after decoding, before any conversion copies them, when the caller needs only
# ``min_side`` pixels: the copies of a 169 M pixel image would take GBs.
_SHRINK_ABOVE = 16_000_000


def _decoded_bytes(image: Image.Image) -> int:
    """An upper bound of the bytes ``image`` takes decoded and converted to RGB (wide modes as float64)."""
    per_pixel = 8 if image.mode in ("I", "F", "I;16", "I;16L", "I;16B", "I;16N") else 4
    return image.size[0] * image.size[1] * per_pixel


def load_rgb(source: str | os.PathLike[str] | bytes, min_side: int | None = None,
             max_pixels: int = ScanConfig().max_pixels) -> Image.Image:
    """Decode an image fully to 8-bit RGB with EXIF orientation applied.

    ``min_side``: when set, JPEGs are decoded at the smallest DCT scale whose shorter side is still
    at least this many pixels (much faster for photos much larger than the model input), and other
    images of more than 16 M pixels are shrunk right after decoding to a shorter side of at least
    4 x ``min_side``. Every decode holds its size in ``DECODE_BUDGET`` while it runs, so peak memory
    stays bounded however many threads decode. Raises on undecodable data; callers turn that into a
    skip reason.
    """
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        opened = Image.open(handle)
    with opened as image:  # closes the file on every path, multi-frame formats included
        if image.size[0] * image.size[1] > max_pixels:
            raise ValueError(f"too large: {image.size[0]}×{image.size[1]} px")
        if min_side and image.format == "JPEG":
            image.draft("RGB", (min_side, min_side))
        with DECODE_BUDGET.reserve(_decoded_bytes(image)):
            image.load()  # first frame of GIF/WebP/TIFF; raises on truncated data
            oriented = _oriented(_shrunk(image, min_side), image, source)
            rgb = to_rgb(oriented)
            return rgb.copy() if rgb is image else rgb


def _shrunk(image: Image.Image, min_side: int | None) -> Image.Image:
    """``image`` reduced by a whole factor when it is far larger than a caller needing ``min_side`` px."""
    width, height = image.size
    if not min_side or width * height <= _SHRINK_ABOVE:
        return image
    factor = min(width, height) // (4 * min_side)
    return image.reduce(factor) if factor >= 2 else image


# EXIF orientation -> the transpose that shows the picture upright (as ImageOps.exif_transpose does).
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


def _oriented(pixels: Image.Image, original: Image.Image, source: object) -> Image.Image:
    """``pixels`` (the decoded ``original``, maybe shrunk) upright by the original's EXIF orientation;
    a broken EXIF block must not cost the picture."""
    try:
        if pixels is original:
            return ImageOps.exif_transpose(original)
        method = _UPRIGHT.get(original.getexif().get(0x0112, 1))  # a shrunk copy has no EXIF of its own
        return pixels.transpose(method) if method is not None else pixels
    except Exception:
        log.debug("ignored unreadable EXIF orientation in %s", source, exc_info=True)
        return pixels


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: 16-bit scaled to 8-bit, transparency flattened onto white."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(values.max()), 255.0)
        if mode == "F" and values.max() <= 1.0:
            top = 1.0
        gray = np.clip(values / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if mode == "RGB" else image.convert("RGB")


def make_thumbnail(image: Image.Image, side: int = 128) -> tuple[bytes, int, int]:
    """A JPEG thumbnail whose longer side is ``side`` pixels: (bytes, width, height)."""
    thumb = image.copy()
    thumb.thumbnail((side, side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=82, optimize=True)
    return buffer.getvalue(), thumb.width, thumb.height
