"""`download`: the official CIFAR-10/100 python archives, fetched, MD5-checked and extracted.

The extracted folder is what `--dataset cifar10:DIR` (`autoaug.training.data`) reads.
"""

from __future__ import annotations

import hashlib
import http.client
import math
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from autoaug.errors import DataError


@dataclass(frozen=True)
class _Archive:
    url: str
    md5: str  # as published on https://www.cs.toronto.edu/~kriz/cifar.html
    folder: str  # what the archive extracts to

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


ARCHIVES = {
    "cifar10": _Archive(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
    ),
    "cifar100": _Archive(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
    ),
}


def download(name: str, dest: str | Path, *, url: str | None = None, timeout: float = 30.0) -> Path:
    """Fetch the official CIFAR-10/100 python archive into dest, check its MD5, extract it.

    Returns the extracted folder (use it as `cifar10:<that>`). An archive already in dest (placed
    there by hand, say) is checked and extracted without any network access. `url` replaces the
    official address (a mirror); the published MD5 is checked all the same.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise DataError(f"download timeout must be a finite number > 0 of seconds, got {timeout!r}")
    if name not in ARCHIVES:
        raise DataError(f"unknown dataset {name!r} to download; expected one of: "
                        f"{', '.join(ARCHIVES)}")
    archive = ARCHIVES[name]
    dest = Path(dest).expanduser()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create download folder {str(dest)!r}: {err}") from None
    target = dest / archive.filename
    if target.is_file():
        md5 = _md5_of(target)
        if md5 != archive.md5:
            raise DataError(f"{str(target)!r} has MD5 {md5}, expected {archive.md5} (incomplete or not the "
                            "official archive); delete it and run again")
    else:
        _fetch(url or archive.url, target, archive, timeout)
    return _extract(target, dest, archive)


def _md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, target: Path, archive: _Archive, timeout: float) -> None:
    # Write to a .part file and rename only after the MD5 matches, so a file named like the
    # archive is always a complete, verified one.
    partial = target.with_name(target.name + ".part")
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            # disable=None: show the bar only on a terminal, so logs and pipes stay clean.
            bar = tqdm(total=total, unit="B", unit_scale=True, desc=archive.filename, disable=None)
            try:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
            finally:
                bar.close()
    except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError) as err:
        partial.unlink(missing_ok=True)
        reason = " ".join(str(getattr(err, "reason", None) or err).split())  # keep one line
        raise DataError(f"could not download {url} ({reason}); this needs internet access, or download the "
                        f"archive by hand and place it at {str(target)!r}, then run again") from None
    md5 = digest.hexdigest()
    if md5 != archive.md5:
        partial.unlink(missing_ok=True)
        raise DataError(f"downloaded {url} has MD5 {md5}, expected {archive.md5}; the file was deleted, "
                        "try again (or use the official URL)")
    partial.replace(target)


def _extract(target: Path, dest: Path, archive: _Archive) -> Path:
    try:
        with tarfile.open(target, "r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")  # refuses absolute paths, '..', devices
            else:  # Python < 3.11.4: check member paths ourselves
                root = dest.resolve()
                for member in tar.getmembers():
                    if not (dest / member.name).resolve().is_relative_to(root) or not (
                        member.isfile() or member.isdir()
                    ):
                        raise tarfile.TarError(f"unsafe member {member.name!r}")
                tar.extractall(dest)
    except (OSError, tarfile.TarError) as err:
        raise DataError(f"cannot extract {str(target)!r}: {err}") from None
    folder = dest / archive.folder
    if not folder.is_dir():
        raise DataError(f"{str(target)!r} did not contain the folder {archive.folder!r}")
    return folder
