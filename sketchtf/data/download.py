"""Fetch Quick Draw classes and TU-Berlin into a local cache, failing fast offline.

Layout of the cache (each folder is directly readable by the readers):

    <cache_dir>/quickdraw/simplified/<class>.ndjson   -> quickdraw.read_ndjson(folder)
    <cache_dir>/quickdraw/raw/<class>.ndjson          -> quickdraw.read_ndjson(folder)
    <cache_dir>/quickdraw/numpy_bitmap/<class>.npy    (N x 784 uint8, ink 255 on 0)
    <cache_dir>/tu_berlin/svg/<class>/<id>.svg        -> tuberlin.read_tuberlin_svg(folder)
    <cache_dir>/tu_berlin/png/<class>/<id>.png        -> tuberlin.read_tuberlin_png(folder)

Guarantees:
- A file appears under its final name only once it is complete and verified:
  bytes stream to a hidden temp file in the same folder, which is renamed with
  os.replace (atomic on POSIX). So a present file is never half a file and is
  skipped on later calls without touching the network.
- Before any transfer a short probe (DNS, then a TCP connect, bounded by
  `probe_timeout`) checks that the host can be reached; without a network the
  call raises DownloadError within a few seconds, naming the URL and saying how
  to use local files instead.
- Checksums: Google Cloud Storage publishes an MD5 per object (the
  `x-goog-hash` response header), verified when sent; a sha256 you pass is
  verified too. Every download gets a `<file>.sha256` sidecar (sha256sum format).

CLI: python -m sketchtf.data.download --dataset=quickdraw --classes=cat,dog --cache_dir=/data/sketches
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import logging
import os
import pathlib
import secrets
import shutil
import socket
import stat
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from typing import Iterable, Optional, Sequence

from sketchtf.data.records import SketchDataError

log = logging.getLogger(__name__)

QUICKDRAW_BASE = "https://storage.googleapis.com/quickdraw_dataset/full"
TUBERLIN_BASE = "http://cybertron.cg.tu-berlin.de/eitz/projects/classifysketch"

# kind -> (bucket folder, file suffix)
QUICKDRAW_KINDS = {
    "simplified": ("simplified", ".ndjson"),
    "raw": ("raw", ".ndjson"),
    "numpy_bitmap": ("numpy_bitmap", ".npy"),
}
TUBERLIN_ARCHIVES = {"png": "sketches_png.zip", "svg": "sketches_svg.zip"}

PROBE_TIMEOUT = 3.0
_CHUNK = 1 << 20
# TU-Berlin: 20,000 sketches; the PNG zip is roughly half a gigabyte. The caps
# stop a wrong or hostile archive from filling the disk.
TUBERLIN_MAX_DOWNLOAD = 2 << 30
TUBERLIN_MAX_EXTRACT = 4 << 30
TUBERLIN_MAX_MEMBERS = 100_000


class DownloadError(OSError):
    """A download could not be done (offline, HTTP error, bad checksum, too big)."""


# ----------------------------------------------------------------------------- probing

def _endpoint(url: str) -> tuple[str, int]:
    """(host, port) the request will really connect to: the proxy if one applies."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return p.hostname, p.port or (443 if p.scheme == "https" else 80)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def probe(url: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Raises DownloadError unless the host of `url` resolves and accepts a TCP
    connection, all within about `timeout` seconds."""
    host, port = _endpoint(url)
    if not host:
        raise DownloadError(f"{url}: no host in URL")
    deadline = time.monotonic() + timeout
    found: dict = {}

    def resolve():
        try:
            found["addrs"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            found["error"] = e

    # getaddrinfo takes no timeout and a dead resolver can block it for tens of
    # seconds; a daemon thread lets us give up on time.
    t = threading.Thread(target=resolve, name="sketchtf-dns-probe", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise DownloadError(f"DNS lookup of {host} timed out after {timeout:g} s")
    if "error" in found:
        raise DownloadError(f"DNS lookup of {host} failed ({found['error']})")
    last = None
    for family, kind, proto, _, addr in found["addrs"]:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as s:
                s.settimeout(left)
                s.connect(addr)
            return
        except OSError as e:
            last = e
    raise DownloadError(f"cannot connect to {host}:{port} within {timeout:g} s ({last or 'timed out'})")


# ----------------------------------------------------------------------------- one file

def _sha256_of(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def sidecar_path(path) -> pathlib.Path:
    path = pathlib.Path(path)
    return path.with_name(path.name + ".sha256")


def _read_sidecar(path: pathlib.Path) -> Optional[str]:
    try:
        text = sidecar_path(path).read_text().split()
    except OSError:
        return None
    return text[0].lower() if text else None


def _new_part(dest: pathlib.Path) -> tuple[int, str]:
    """A fresh hidden temp file beside `dest`. Unlike mkstemp's 0600 it gets the
    umask's permissions, so a shared cache stays readable after the rename."""
    while True:
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.part")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(tmp)
        except FileExistsError:
            continue


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_atomic(path: pathlib.Path, text: str) -> None:
    fd, tmp = _new_part(path)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _goog_md5(headers) -> Optional[str]:
    """MD5 (hex) from GCS's `x-goog-hash: crc32c=..., md5=...` header, if sent."""
    for value in headers.get_all("x-goog-hash") or []:
        for item in value.split(","):
            key, _, b64 = item.strip().partition("=")
            if key == "md5" and b64:
                return base64.b64decode(b64).hex()
    return None


def _remove_stale_parts(dest: pathlib.Path, older_than_s: float = 3600.0) -> None:
    # A killed process leaves its temp file (never the final name); clean old ones.
    now = time.time()
    for p in dest.parent.glob(f".{dest.name}.*.part"):
        try:
            if now - p.stat().st_mtime > older_than_s:
                p.unlink()
        except OSError:
            pass


def download_file(url: str, dest, *, timeout: float = 10.0, sha256: Optional[str] = None,
                  max_bytes: Optional[int] = None, probe_timeout: float = PROBE_TIMEOUT,
                  local_hint: str = "") -> pathlib.Path:
    """Downloads `url` to `dest` atomically; returns dest.

    Skips the transfer when `dest` exists (only complete files ever get that
    name); with `sha256` an existing file is checked against its sidecar or,
    without one, re-hashed. `timeout` bounds each network read, `max_bytes`
    the size. `local_hint` ends the offline error message.
    """
    dest = pathlib.Path(dest)
    if dest.exists():
        _check_existing(dest, sha256)
        return dest
    hint = f" To use local files instead: {local_hint}" if local_hint else ""
    try:
        probe(url, min(probe_timeout, timeout))
    except DownloadError as e:
        raise DownloadError(f"cannot download {url}: {e}. This machine seems to be offline "
                            f"(or the host is blocked).{hint}") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(dest)
    response = _open(url, timeout, hint)
    fd, tmp_name = _new_part(dest)
    tmp = pathlib.Path(tmp_name)
    try:
        with response, os.fdopen(fd, "wb") as out:
            digest, n = _copy_checked(response, out, url, dest, max_bytes, sha256)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_atomic(sidecar_path(dest), f"{digest}  {dest.name}\n")
    log.info("downloaded %s -> %s (%d bytes)", url, dest, n)
    return dest


def _check_existing(dest: pathlib.Path, sha256: Optional[str]) -> None:
    if sha256 is None:
        return
    have = _read_sidecar(dest) or _sha256_of(dest)
    if have != sha256.lower():
        raise DownloadError(f"{dest}: sha256 {have} does not match the expected {sha256}; "
                            "delete the file to download it again")


def _open(url: str, timeout: float, hint: str):
    request = urllib.request.Request(url, headers={"User-Agent": "sketchtf-download/0.1"})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        err = DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}")
        err.http_status = e.code
        raise err from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"cannot download {url}: {reason}.{hint}") from None


def _copy_checked(response, out, url, dest, max_bytes, sha256):
    """Streams the body into `out`, checking size cap, Content-Length, the
    server's md5 and the expected sha256. Returns (sha256 hex, bytes)."""
    length = response.headers.get("Content-Length")
    expected_len = int(length) if length and length.isdigit() else None
    if max_bytes is not None and expected_len is not None and expected_len > max_bytes:
        raise DownloadError(f"{url}: {expected_len} bytes exceeds the cap of {max_bytes}")
    sha, md5, n = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    last_log = time.monotonic()
    while True:
        try:
            chunk = response.read(_CHUNK)
        except (OSError, http.client.HTTPException) as e:
            raise DownloadError(f"{url}: transfer failed after {n} bytes ({e})") from None
        if not chunk:
            break
        n += len(chunk)
        if max_bytes is not None and n > max_bytes:
            raise DownloadError(f"{url}: more than the cap of {max_bytes} bytes")
        sha.update(chunk)
        md5.update(chunk)
        out.write(chunk)
        if time.monotonic() - last_log > 10:
            log.info("%s: %.1f MB", url, n / 1e6)
            last_log = time.monotonic()
    if expected_len is not None and n != expected_len:
        raise DownloadError(f"{url}: connection closed after {n} of {expected_len} bytes")
    # The hash is of the stored bytes; GCS unzips gzip-stored objects on the fly.
    stored_as = response.headers.get("x-goog-stored-content-encoding", "identity")
    server_md5 = _goog_md5(response.headers) if stored_as == "identity" else None
    if server_md5 is not None and server_md5 != md5.hexdigest():
        raise DownloadError(f"{url} -> {dest}: md5 {md5.hexdigest()} does not match the "
                            f"server's x-goog-hash md5 {server_md5}")
    digest = sha.hexdigest()
    if sha256 is not None and digest != sha256.lower():
        raise DownloadError(f"{url} -> {dest}: sha256 {digest} does not match the expected {sha256}")
    return digest, n


# ----------------------------------------------------------------------------- Quick Draw

def _check_class_name(name: str) -> str:
    # Class names become file names: keep them inside the cache folder.
    if (not name or name.strip() != name or name in (".", "..")
            or any(c in name for c in "/\\\0")):
        raise ValueError(f"invalid Quick Draw class name {name!r}")
    return name


def quickdraw_classes() -> list[str]:
    """All 345 Quick Draw categories, Google's spelling (its categories.txt)."""
    text = (pathlib.Path(__file__).with_name("quickdraw_classes.txt")).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line]


def quickdraw_url(cls: str, kind: str = "simplified", base_url: str = QUICKDRAW_BASE) -> str:
    folder, suffix = QUICKDRAW_KINDS[kind]
    return f"{base_url.rstrip('/')}/{folder}/{urllib.parse.quote(cls)}{suffix}"


def download_quickdraw(classes: Iterable[str], cache_dir, *, kind: str = "simplified",
                       timeout: float = 10.0, base_url: str = QUICKDRAW_BASE,
                       probe_timeout: float = PROBE_TIMEOUT) -> list[pathlib.Path]:
    """Downloads Quick Draw classes from Google's public bucket; returns the paths.

    Files go to `<cache_dir>/quickdraw/<kind>/<class><suffix>`, in `classes`
    order; files already there are not fetched again. Class names are Google's
    spelling, case and spaces included ("The Eiffel Tower", "alarm clock").
    kind: "simplified" (ndjson, 0-255, RDP-simplified), "raw" (ndjson with
    timing) or "numpy_bitmap" (.npy, N x 784 uint8 28x28 bitmaps).
    """
    if kind not in QUICKDRAW_KINDS:
        raise ValueError(f"kind must be one of {sorted(QUICKDRAW_KINDS)}, got {kind!r}")
    classes = [_check_class_name(c) for c in classes]
    if not classes:
        raise ValueError("no classes given")
    folder = pathlib.Path(cache_dir).expanduser() / "quickdraw" / kind
    what, source, reader = (("npy", "bitmap_npy", "read_bitmap_npy('/dir/of/npy')")
                            if kind == "numpy_bitmap" else
                            ("ndjson", "quickdraw_ndjson", "read_ndjson('/dir/of/ndjson')"))
    paths = []
    for cls in classes:
        url = quickdraw_url(cls, kind, base_url)
        dest = folder / (cls + QUICKDRAW_KINDS[kind][1])
        hint = (f"fetch {url} on a machine with internet and copy it to {dest} (files "
                f"present there are used as they are), or point at a folder of <class> files "
                f"you already have: --config.data.source={source} "
                f"--config.data.path=/dir/of/{what}, or in Python "
                f"sketchtf.data.quickdraw.{reader}.")
        try:
            paths.append(download_file(url, dest, timeout=timeout, probe_timeout=probe_timeout,
                                       local_hint=hint))
        except DownloadError as e:
            if getattr(e, "http_status", None) != 404:
                raise
            raise DownloadError(f"{e}: is {cls!r} a Quick Draw category? Names are Google's, "
                                "case and spaces included (see categories.txt in the "
                                "quickdraw-dataset repository)") from None
    return paths


# ----------------------------------------------------------------------------- TU-Berlin

def _member_target(root: pathlib.Path, info: zipfile.ZipInfo, archive) -> pathlib.Path:
    """Where a member may be written, or SketchDataError if it would escape `root`."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise SketchDataError(archive, info.filename, "absolute path in zip archive (refused)")
    if ".." in name.split("/"):
        raise SketchDataError(archive, info.filename, "'..' in zip member path escapes the "
                              "target folder (zip-slip, refused)")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise SketchDataError(archive, info.filename, "symbolic link in zip archive (refused)")
    target = (root / name).resolve()
    if target != root and root not in target.parents:
        raise SketchDataError(archive, info.filename, "zip member escapes the target folder")
    return target


def extract_zip(archive, dest_dir, *, max_bytes: int = TUBERLIN_MAX_EXTRACT,
                max_members: int = TUBERLIN_MAX_MEMBERS) -> pathlib.Path:
    """Extracts `archive` into the new folder `dest_dir` (atomically renamed into
    place); refuses members that escape it and archives over the caps.
    If the archive holds one top-level folder, that folder becomes `dest_dir`."""
    archive, dest_dir = pathlib.Path(archive), pathlib.Path(dest_dir)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise SketchDataError(archive, None, f"not a readable zip archive ({e})") from None
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(dir=dest_dir.parent, prefix=f".{dest_dir.name}.",
                                         suffix=".part"))
    try:
        os.chmod(work, 0o777 & ~_umask())  # it may become dest_dir itself
        with zf:
            infos = zf.infolist()
            if len(infos) > max_members:
                raise SketchDataError(archive, None, f"{len(infos)} members exceed the cap of {max_members}")
            declared = sum(i.file_size for i in infos)
            if declared > max_bytes:
                raise SketchDataError(archive, None, f"{declared} bytes uncompressed exceed the cap "
                                      f"of {max_bytes}")
            root = work.resolve()
            written = 0
            for info in infos:
                target = _member_target(root, info, archive)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with zf.open(info) as src, open(target, "wb") as out:
                        # Count what really comes out, not what the header claims.
                        for chunk in iter(lambda: src.read(_CHUNK), b""):
                            written += len(chunk)
                            if written > max_bytes:
                                raise SketchDataError(archive, info.filename,
                                                      f"extracted data exceed the cap of {max_bytes} bytes")
                            out.write(chunk)
                except (zipfile.BadZipFile, zlib.error, EOFError) as e:
                    raise SketchDataError(archive, info.filename, f"corrupt member ({e})") from None
        entries = [p for p in work.iterdir() if not p.name.startswith("__MACOSX")]
        top = entries[0] if len(entries) == 1 and entries[0].is_dir() else work
        try:
            os.replace(top, dest_dir)
        except OSError:
            if not dest_dir.is_dir():  # a concurrent run may have won the race
                raise
        return dest_dir
    finally:
        shutil.rmtree(work, ignore_errors=True)


def download_tuberlin(cache_dir, *, kind: str = "svg", timeout: float = 10.0,
                      base_url: str = TUBERLIN_BASE, sha256: Optional[str] = None,
                      archive=None, keep_archive: bool = False,
                      max_download: int = TUBERLIN_MAX_DOWNLOAD,
                      max_extract: int = TUBERLIN_MAX_EXTRACT,
                      probe_timeout: float = PROBE_TIMEOUT) -> pathlib.Path:
    """Downloads and extracts TU-Berlin (Eitz et al. 2012); returns the folder of
    `<class>/<id>.<kind>` files (`<cache_dir>/tu_berlin/<kind>`).

    The project page publishes no checksum, so none is checked by default; pass
    `sha256=` (e.g. of a copy you trust) to verify the zip. `archive=` takes a
    zip you already have (no network). Extraction refuses members that would
    land outside the target folder (zip-slip) and archives beyond `max_extract`
    bytes. An already extracted folder is returned at once.
    """
    if kind not in TUBERLIN_ARCHIVES:
        raise ValueError(f"kind must be one of {sorted(TUBERLIN_ARCHIVES)}, got {kind!r}")
    base = pathlib.Path(cache_dir).expanduser() / "tu_berlin"
    final = base / kind
    if final.is_dir():
        return final
    url = f"{base_url.rstrip('/')}/{TUBERLIN_ARCHIVES[kind]}"
    if archive is None:
        reader = "read_tuberlin_svg" if kind == "svg" else "read_tuberlin_png"
        hint = (f"fetch {url} elsewhere and pass download_tuberlin(..., archive='/path/"
                f"{TUBERLIN_ARCHIVES[kind]}'), or unzip it and point at the folder of <class>/ "
                f"subfolders: --config.data.source=tuberlin_{kind} "
                f"--config.data.path=/path/to/{kind}, or in Python "
                f"sketchtf.data.tuberlin.{reader}('/path/to/{kind}').")
        zpath = download_file(url, base / TUBERLIN_ARCHIVES[kind], timeout=timeout, sha256=sha256,
                              max_bytes=max_download, probe_timeout=probe_timeout, local_hint=hint)
    else:
        zpath = pathlib.Path(archive)
        if sha256 is not None and _sha256_of(zpath) != sha256.lower():
            raise DownloadError(f"{zpath}: sha256 does not match the expected {sha256}")
    out = extract_zip(zpath, final, max_bytes=max_extract)
    if archive is None and not keep_archive:
        zpath.unlink(missing_ok=True)
        sidecar_path(zpath).unlink(missing_ok=True)
    return out


# ----------------------------------------------------------------------------- CLI

def _define_flags():
    # Defined only when run as a program, so importing this module adds no flags.
    from absl import flags
    flags.DEFINE_enum("dataset", None, ["quickdraw", "tu_berlin"], "What to download.")
    flags.DEFINE_list("classes", [], "Quick Draw classes, comma-separated (Google's spelling), "
                      "or 'all' for the 345 categories.")
    flags.DEFINE_string("cache_dir", os.path.join("~", ".cache", "sketchtf"), "Cache folder.")
    flags.DEFINE_string("kind", None, "quickdraw: simplified|raw|numpy_bitmap (default "
                        "simplified); tu_berlin: svg|png (default svg).")
    flags.DEFINE_float("timeout", 10.0, "Seconds per network read.")
    flags.DEFINE_string("base_url", None, "Override the source URL (mirrors, tests).")
    flags.DEFINE_string("sha256", None, "tu_berlin: expected sha256 of the zip.")
    flags.DEFINE_string("archive", None, "tu_berlin: a local copy of the zip (no download).")
    flags.mark_flag_as_required("dataset")


def main(argv: Sequence[str]) -> None:
    from absl import app, flags
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    logging.basicConfig(level=logging.INFO)
    try:
        if f.dataset == "quickdraw":
            if not f.classes:
                raise app.UsageError("--classes is required for --dataset=quickdraw")
            classes = quickdraw_classes() if f.classes == ["all"] else f.classes
            paths = download_quickdraw(classes, f.cache_dir, kind=f.kind or "simplified",
                                       timeout=f.timeout, base_url=f.base_url or QUICKDRAW_BASE)
        else:
            paths = [download_tuberlin(f.cache_dir, kind=f.kind or "svg", timeout=f.timeout,
                                       base_url=f.base_url or TUBERLIN_BASE, sha256=f.sha256,
                                       archive=f.archive)]
    except DownloadError as e:
        raise SystemExit(f"error: {e}") from None
    for p in paths:
        print(p)


if __name__ == "__main__":
    from absl import app
    _define_flags()
    app.run(main)
