"""Download and unpack the CIFAR-10 python-pickle archive.

The archive is streamed to a temporary file next to the destination while its MD5 is computed,
checked against the expected digest, and unpacked only if every member stays inside the
destination and is a regular file or folder.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from quantlens.errors import DatasetError, DownloadError, InputError

logger = logging.getLogger(__name__)

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_FOLDER = "cifar-10-batches-py"
CHUNK_BYTES = 1 << 20
URL_SCHEMES = ("http", "https", "file")


def default_destination() -> Path:
    """Return the folder the archive is unpacked into by default, ``~/.cache/quantlens``.

    quantlens looks for ``cifar-10-batches-py`` there when no data folder is given.
    """
    return Path.home() / ".cache" / "quantlens"


def manual_steps(url: str, destination: Path) -> str:
    """Return the instructions for getting the data without this command."""
    return (
        f"Download {url} by hand (browser or curl) and unpack it with "
        f"`tar xzf cifar-10-python.tar.gz -C {destination}`, or pass --data-dir to a folder that "
        "already holds cifar-10-batches-py"
    )


def download_cifar10(
    destination: str | os.PathLike[str] | None = None,
    *,
    url: str = OFFICIAL_URL,
    md5: str = OFFICIAL_MD5,
    force: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download the CIFAR-10 archive, verify its MD5, unpack it and return the data folder.

    The data ends up in ``destination/cifar-10-batches-py`` (default destination
    ``~/.cache/quantlens``). An existing folder with ``test_batch`` is kept unless ``force``.
    ``timeout`` is in seconds per network operation. Raises DownloadError when the download
    fails or the digest differs, and DatasetError when the archive is not safe to unpack.
    """
    folder = Path(destination).expanduser() if destination is not None else default_destination()
    target = folder / ARCHIVE_FOLDER
    if (target / "test_batch").is_file() and not force:
        logger.info("CIFAR-10 is already in %s; pass force=True to download it again", target)
        return target
    _check_url(url)
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "cifar-10-python.tar.gz.part"
    try:
        digest = _fetch(url, archive, timeout=timeout, progress=progress)
        if digest != md5.lower():
            raise DownloadError(
                f"the file downloaded from {url} has MD5 {digest}, expected {md5.lower()}; it is "
                f"corrupt or not the CIFAR-10 archive. {manual_steps(url, folder)}"
            )
        extract_safely(archive, folder)
    finally:
        archive.unlink(missing_ok=True)
    if not (target / "test_batch").is_file():
        raise DatasetError(f"the archive from {url} has no {ARCHIVE_FOLDER}/test_batch; is it the python version?")
    return target


def _check_url(url: str) -> None:
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in URL_SCHEMES:
        raise InputError(f"invalid download URL {url!r}: use an http, https or file URL")


def _fetch(url: str, path: Path, *, timeout: float, progress: bool) -> str:
    """Stream ``url`` into ``path`` and return the MD5 hex digest of the bytes written."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, path.open("wb") as handle:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, desc="cifar-10-python.tar.gz", disable=not progress) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    handle.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(
            f"download of {url} failed: {reason}. {manual_steps(url, path.parent)}"
        ) from exc
    return digest.hexdigest()


def extract_safely(archive: Path, destination: Path) -> None:
    """Unpack a .tar.gz into ``destination``, rejecting members that could write outside it.

    Every member must be a regular file or folder whose path stays inside ``destination``.
    Links, devices, absolute paths and ``..`` components raise DatasetError before anything
    is written.
    """
    root = destination.resolve()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, root)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(root, members=members, filter="data")
            else:  # Python releases without extraction filters; the checks above still apply
                tar.extractall(root, members=members)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DatasetError(f"cannot unpack {archive.name}: {exc}; the archive is corrupt") from exc


def _check_member(member: tarfile.TarInfo, root: Path) -> None:
    if not (member.isfile() or member.isdir()):
        raise DatasetError(f"archive member {member.name!r} is a link or device; the archive was rejected and nothing unpacked")
    resolved = (root / member.name).resolve()
    if os.path.isabs(member.name) or not resolved.is_relative_to(root):
        raise DatasetError(
            f"archive member {member.name!r} points outside {str(root)!r}; the archive was rejected and nothing unpacked"
        )
