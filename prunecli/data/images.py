"""Unreadable image files (imagefolder, ham10000): one `error:` line naming the file, or, with
`--skip-bad-images`, the sample is dropped and one warning says how many were skipped.

Where the check happens, and why there:

* At decode, in the data set's `__getitem__` (`open_rgb`). That is the only place a truncated
  or half-written file shows (its header reads fine), and it costs nothing extra. A full
  decode of every file up front would double the first epoch; even a header scan of every
  file costs an open() per image on every run (minutes on ImageNet over a network file system)
  and still misses truncated files.
* A sample that fails becomes a `BadImage` marker instead of raising, and the batch carries
  its markers out (`collate`). So a DataLoader worker never raises (its exception would come
  back as a multi-line "Caught … in DataLoader worker process" text) and the decision is taken
  in the main process by `FolderLoader.__iter__` → `check_batch`.
* Only once a bad file is met, the other files of the split get a header scan, bounded to a few
  seconds, so the error can say how many more there are (`--skip-bad-images` also skips the ones
  only a full decode finds).

No torch at import: the CLI imports `set_skip_bad_images` before deciding to load anything.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple

from prunecli.errors import UserError

_SKIP = {"on": False}
_WARNED: set[str] = set()  # files already reported by a warning in this process
SCAN_SECONDS = 5.0


def set_skip_bad_images(on: bool) -> None:
    """Set by each command that reads data (`--skip-bad-images`); read in the main process only.
    Also starts a new command's count of warned files."""
    _SKIP["on"] = bool(on)
    _WARNED.clear()


def skipping() -> bool:
    return _SKIP["on"]


class BadImage(NamedTuple):
    """Stands in for a sample whose image could not be decoded (picklable, from workers)."""

    path: str
    reason: str


class UnreadableImage(Exception):
    """Raised by `open_rgb`; turned into a `BadImage` by the loader's sample wrapper."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def open_rgb(path: str | Path):
    """Decode `path` as an RGB PIL image (torchvision's pil_loader), or raise UnreadableImage.

    PIL reports a bad file with many exception types (UnidentifiedImageError, OSError for a
    truncated file, SyntaxError/ValueError/struct.error/AttributeError from its plugins), so
    anything raised while decoding this one file is the file's fault; the transform runs outside."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except MemoryError:
        raise
    except UnidentifiedImageError:
        raise UnreadableImage(str(path), "not an image file PIL can identify") from None
    except Exception as err:  # noqa: BLE001 - see the docstring
        text = str(err).splitlines()[0] if str(err) else ""
        raise UnreadableImage(str(path), f"{type(err).__name__}: {text[:160]}".rstrip(": ")) from None


def collate(batch: list) -> tuple[Any, Any, list[BadImage]]:
    """default_collate of the good samples, plus the markers of the bad ones."""
    from torch.utils.data import default_collate

    good = [s for s in batch if not isinstance(s, BadImage)]
    bad = [s for s in batch if isinstance(s, BadImage)]
    x, y = default_collate(good) if good else (None, None)
    return x, y, bad


def sample_paths(base) -> list[str]:
    """The file of every sample of an ImageFolder / LesionImages, or a Subset of one."""
    if hasattr(base, "samples"):
        return [str(p) for p, _ in base.samples]
    if hasattr(base, "dataset") and hasattr(base, "indices"):
        inner = sample_paths(base.dataset)
        return [inner[i] for i in base.indices]
    return []


def check_batch(bad: list[BadImage], base, skipped: dict[str, str]) -> None:
    """Raise one UserError for the first bad file, or record them in `skipped` (--skip-bad-images)."""
    if skipping():
        skipped.update({b.path: b.reason for b in bad})
        return
    first = bad[0]
    others, complete = header_scan(sample_paths(base), exclude={first.path})
    others |= {b.path for b in bad[1:]}
    if others:
        count = f"{len(others)}" if complete else f"at least {len(others)}"
        verb = "fails" if len(others) == 1 and complete else "fail"
        more = f"; {count} more of its split {verb} a header check (e.g. {sorted(others)[0]})"
    else:
        more = "; the other files of its split pass a header check" if complete else ""
    raise UserError(f"cannot read image {first.path} ({first.reason}){more}",
                    hint="--skip-bad-images leaves unreadable images out (with a warning saying how many)")


def header_scan(paths: list[str], exclude: set[str], seconds: float = SCAN_SECONDS) -> tuple[set[str], bool]:
    """Files whose header PIL cannot read, within `seconds`; (found, whether every file was scanned)."""
    from PIL import Image

    found: set[str] = set()
    deadline = time.monotonic() + seconds
    for path in paths:
        if path in exclude:
            continue
        if time.monotonic() > deadline:
            return found, False
        try:
            with Image.open(path):
                pass
        except Exception:  # noqa: BLE001 - any failure to identify the file counts
            found.add(path)
    return found, True


def report_skipped(skipped: dict[str, str], read: int = 1) -> None:
    """One warning for the files skipped in this pass that no earlier warning named; an error
    when no image at all could be read (a 0% accuracy over 0 images would look like a result)."""
    if skipped and not read:
        first = sorted(skipped)[0]
        raise UserError(f"none of the images of this split could be read ({len(skipped)} skipped by "
                        f"--skip-bad-images; first: {first}: {skipped[first]})")
    new = sorted(set(skipped) - _WARNED)
    if not new:
        return
    _WARNED.update(new)
    from prunecli.console import err

    first = new[0]
    err.print(f"[yellow]warning:[/] skipped {len(new)} unreadable image{'s' * (len(new) != 1)} "
              f"(--skip-bad-images; first: {first}: {skipped[first]})", soft_wrap=True, markup=True)
