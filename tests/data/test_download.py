"""Downloads, tested against a local HTTP server on 127.0.0.1 (no internet)."""
import base64
import hashlib
import http.server
import io
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile

import pytest

from sketchtf.data import download as dl
from sketchtf.data.records import SketchDataError

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # A proxy from the environment would route 127.0.0.1 requests elsewhere.
    for v in PROXY_VARS:
        monkeypatch.delenv(v, raising=False)


class _Handler(http.server.SimpleHTTPRequestHandler):
    extra_headers: dict = {}
    truncate: set = set()
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        if self.path in self.truncate:
            body = b"x" * 1000
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 5000))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        super().do_GET()

    def end_headers(self):
        for k, v in self.extra_headers.get(self.path, []):
            self.send_header(k, v)
        super().end_headers()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = type("H", (_Handler,), {"extra_headers": {}, "truncate": set(), "requests": []})

    def make(*args, **kw):
        return handler(*args, directory=str(root), **kw)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv = type("S", (), {})()
    srv.root, srv.handler = root, handler
    srv.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield srv
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_port_url():
    # A port nobody listens on: connection refused, like a blocked network.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _put(root, rel, data: bytes):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def _ndjson(word, n):
    return "".join(f'{{"word": "{word}", "key_id": "{i}", "recognized": true, '
                   f'"drawing": [[[0, {i + 1}], [0, 5]]]}}\n' for i in range(n)).encode()


def _parts(folder):
    return sorted(p.name for p in pathlib.Path(folder).rglob("*.part"))


def test_quickdraw_transfer_layout_and_sidecar(server, tmp_path):
    cat, clock = _ndjson("cat", 3), _ndjson("alarm clock", 2)
    _put(server.root, "simplified/cat.ndjson", cat)
    _put(server.root, "simplified/alarm clock.ndjson", clock)
    cache = tmp_path / "cache"
    paths = dl.download_quickdraw(["cat", "alarm clock"], cache, base_url=server.url)
    assert paths == [cache / "quickdraw/simplified/cat.ndjson",
                     cache / "quickdraw/simplified/alarm clock.ndjson"]
    assert paths[0].read_bytes() == cat and paths[1].read_bytes() == clock
    assert "/simplified/alarm%20clock.ndjson" in server.handler.requests
    assert dl.sidecar_path(paths[0]).read_text() == f"{hashlib.sha256(cat).hexdigest()}  cat.ndjson\n"
    assert _parts(cache) == []
    umask = os.umask(0)
    os.umask(umask)
    assert paths[0].stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_quickdraw_numpy_bitmap_url(server, tmp_path):
    _put(server.root, "numpy_bitmap/cat.npy", b"\x93NUMPY fake")
    (p,) = dl.download_quickdraw(["cat"], tmp_path / "c", kind="numpy_bitmap", base_url=server.url)
    assert p.name == "cat.npy" and p.read_bytes() == b"\x93NUMPY fake"
    assert dl.quickdraw_url("The Eiffel Tower") == (
        "https://storage.googleapis.com/quickdraw_dataset/full/simplified/The%20Eiffel%20Tower.ndjson")


def test_present_files_are_not_fetched_again(server, tmp_path, closed_port_url):
    _put(server.root, "simplified/cat.ndjson", _ndjson("cat", 3))
    cache = tmp_path / "cache"
    first = dl.download_quickdraw(["cat"], cache, base_url=server.url)
    n_requests = len(server.handler.requests)
    again = dl.download_quickdraw(["cat"], cache, base_url=server.url)
    offline = dl.download_quickdraw(["cat"], cache, base_url=closed_port_url)
    assert again == first == offline
    assert len(server.handler.requests) == n_requests


def test_truncated_transfer_leaves_no_file(server, tmp_path):
    server.handler.truncate.add("/simplified/cat.ndjson")
    cache = tmp_path / "cache"
    with pytest.raises(dl.DownloadError, match="closed after 1000 of 6000 bytes"):
        dl.download_quickdraw(["cat"], cache, base_url=server.url)
    folder = cache / "quickdraw/simplified"
    assert not (folder / "cat.ndjson").exists()
    assert _parts(cache) == []


def test_gcs_md5_header_is_verified(server, tmp_path):
    data = _ndjson("cat", 4)

    def goog_hash(payload):
        return [("x-goog-hash", "crc32c=AAAAAA=="),
                ("x-goog-hash", "md5=" + base64.b64encode(hashlib.md5(payload).digest()).decode())]

    _put(server.root, "simplified/cat.ndjson", data)
    _put(server.root, "simplified/dog.ndjson", data)
    server.handler.extra_headers["/simplified/cat.ndjson"] = goog_hash(data)
    server.handler.extra_headers["/simplified/dog.ndjson"] = goog_hash(b"other bytes")
    cache = tmp_path / "cache"
    (cat,) = dl.download_quickdraw(["cat"], cache, base_url=server.url)
    assert cat.read_bytes() == data
    with pytest.raises(dl.DownloadError, match=r"dog\.ndjson: md5 .* does not match"):
        dl.download_quickdraw(["dog"], cache, base_url=server.url)
    assert not (cache / "quickdraw/simplified/dog.ndjson").exists()
    assert _parts(cache) == []


def test_unknown_class_404_says_so(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="HTTP 404.*Quick Draw category"):
        dl.download_quickdraw(["no such thing"], tmp_path, base_url=server.url)


@pytest.mark.parametrize("name", ["../escape", "a/b", "", "..", " cat"])
def test_class_names_cannot_escape_the_cache(name, tmp_path):
    with pytest.raises(ValueError, match="invalid Quick Draw class name"):
        dl.download_quickdraw([name], tmp_path, base_url="http://127.0.0.1:9")


def test_offline_fails_fast_with_local_file_advice(tmp_path, closed_port_url):
    t0 = time.monotonic()
    with pytest.raises(dl.DownloadError) as e:
        dl.download_quickdraw(["cat"], tmp_path, base_url=closed_port_url)
    assert time.monotonic() - t0 < 15
    msg = str(e.value)
    assert f"{closed_port_url}/simplified/cat.ndjson" in msg
    assert "offline" in msg and "--config.data.path=" in msg and "read_ndjson('" in msg


def test_offline_dns_failure_on_the_real_url(tmp_path, monkeypatch):
    # Simulated: no packet leaves the machine, and no transfer is even attempted.
    def no_dns(*a, **k):
        raise socket.gaierror(-2, "Name or service not known")

    def no_transfer(*a, **k):
        raise AssertionError("urlopen must not be reached when the probe fails")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(urllib.request, "urlopen", no_transfer)
    t0 = time.monotonic()
    with pytest.raises(dl.DownloadError) as e:
        dl.download_quickdraw(["cat"], tmp_path)
    assert time.monotonic() - t0 < 15
    msg = str(e.value)
    assert "https://storage.googleapis.com/quickdraw_dataset/full/simplified/cat.ndjson" in msg
    assert "DNS lookup of storage.googleapis.com failed" in msg
    assert str(tmp_path / "quickdraw/simplified/cat.ndjson") in msg


def test_probe_gives_up_on_a_hanging_resolver(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: time.sleep(20))
    t0 = time.monotonic()
    with pytest.raises(dl.DownloadError, match="DNS lookup of example.org timed out"):
        dl.probe("https://example.org/x", timeout=0.5)
    assert time.monotonic() - t0 < 3


def test_probe_goes_to_the_proxy_when_one_is_set(monkeypatch, server, closed_port_url):
    monkeypatch.setenv("https_proxy", server.url)
    monkeypatch.setenv("no_proxy", "")
    assert dl._endpoint("https://storage.googleapis.com/x") == ("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
    looked_up, real = [], socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: looked_up.append(host) or real(host, *a, **k))
    dl.probe("https://storage.googleapis.com/x", timeout=2)
    assert looked_up == ["127.0.0.1"]  # the proxy, never the bucket's host
    monkeypatch.setenv("https_proxy", closed_port_url)  # a dead proxy means offline
    with pytest.raises(dl.DownloadError):
        dl.probe("https://storage.googleapis.com/x", timeout=2)


# ----------------------------------------------------------------------------- TU-Berlin

def _zip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


def test_tuberlin_download_verify_extract(server, tmp_path):
    members = {"svg/airplane/1.svg": b"<svg>1</svg>", "svg/angel/161.svg": b"<svg>161</svg>",
               "svg/filelist.txt": b"airplane/1.svg\nangel/161.svg\n"}
    blob = _zip(members)
    _put(server.root, "sketches_svg.zip", blob)
    cache = tmp_path / "cache"
    root = dl.download_tuberlin(cache, kind="svg", base_url=server.url,
                                sha256=hashlib.sha256(blob).hexdigest())
    assert root == cache / "tu_berlin/svg"
    umask = os.umask(0)
    os.umask(umask)
    assert root.stat().st_mode & 0o777 == 0o777 & ~umask
    for name, data in members.items():
        assert (root / name.removeprefix("svg/")).read_bytes() == data
    assert not (cache / "tu_berlin/sketches_svg.zip").exists()  # archive dropped after extraction
    assert sorted(p.name for p in (cache / "tu_berlin").iterdir()) == ["svg"]
    n = len(server.handler.requests)
    assert dl.download_tuberlin(cache, kind="svg", base_url=server.url) == root
    assert len(server.handler.requests) == n


def test_tuberlin_checksum_mismatch_names_the_file(server, tmp_path):
    _put(server.root, "sketches_png.zip", _zip({"png/cat/1.png": b"png"}))
    cache = tmp_path / "cache"
    with pytest.raises(dl.DownloadError, match=r"sketches_png\.zip: sha256 [0-9a-f]{64} does not match"):
        dl.download_tuberlin(cache, kind="png", base_url=server.url, sha256="0" * 64)
    assert not (cache / "tu_berlin/png").exists()
    assert not (cache / "tu_berlin/sketches_png.zip").exists()
    assert _parts(cache) == []


def test_tuberlin_offline_advice(tmp_path, closed_port_url):
    t0 = time.monotonic()
    with pytest.raises(dl.DownloadError) as e:
        dl.download_tuberlin(tmp_path, kind="svg", base_url=closed_port_url)
    assert time.monotonic() - t0 < 15
    msg = str(e.value)
    assert f"{closed_port_url}/sketches_svg.zip" in msg
    assert "archive=" in msg and "read_tuberlin_svg('" in msg


def test_tuberlin_from_local_archive(tmp_path, shared):
    svg_root = shared("tu_berlin_svg_sample")
    files = sorted(svg_root.rglob("*.svg"))
    archive = tmp_path / "sketches_svg.zip"
    archive.write_bytes(_zip({f"svg/{p.relative_to(svg_root)}": p.read_bytes() for p in files}))
    root = dl.download_tuberlin(tmp_path / "cache", kind="svg", archive=archive,
                                base_url="http://127.0.0.1:9")  # never contacted
    got = sorted(root.rglob("*.svg"))
    assert [p.relative_to(root) for p in got] == [p.relative_to(svg_root) for p in files]
    assert archive.exists()  # a user's own archive is kept

    from sketchtf.data.tuberlin import read_tuberlin_svg
    ours = [(s.label, len(s.strokes), s.num_points) for s in read_tuberlin_svg(root)]
    orig = [(s.label, len(s.strokes), s.num_points) for s in read_tuberlin_svg(svg_root)]
    assert ours == orig and len(ours) == len(files)


@pytest.mark.parametrize("evil", ["../escaped.txt", "svg/../../escaped.txt", "/tmp/escaped.txt",
                                  "svg\\..\\..\\escaped.txt"])
def test_zip_slip_is_refused(tmp_path, evil):
    archive = tmp_path / "a" / "evil.zip"
    archive.parent.mkdir()
    archive.write_bytes(_zip({"svg/cat/1.svg": b"ok", evil: b"pwned"}))
    dest = tmp_path / "a" / "out" / "svg"
    with pytest.raises(SketchDataError, match=r"evil\.zip:.*escaped\.txt.*refused"):
        dl.extract_zip(archive, dest)
    assert not dest.exists()
    assert not list(tmp_path.rglob("escaped.txt"))
    assert [p.name for p in (tmp_path / "a" / "out").iterdir()] == []  # temp folder removed


def test_zip_size_and_member_caps(tmp_path):
    archive = tmp_path / "big.zip"
    archive.write_bytes(_zip({"svg/a/1.svg": b"0" * 5000, "svg/a/2.svg": b"1" * 5000}))
    with pytest.raises(SketchDataError, match=r"big\.zip: 10000 bytes uncompressed exceed the cap of 9000"):
        dl.extract_zip(archive, tmp_path / "out", max_bytes=9000)
    with pytest.raises(SketchDataError, match="3 members exceed the cap of 2"):
        archive.write_bytes(_zip({"a": b"", "b": b"", "c": b""}))
        dl.extract_zip(archive, tmp_path / "out", max_members=2)
    assert not (tmp_path / "out").exists()


def test_not_a_zip(tmp_path):
    archive = tmp_path / "sketches_svg.zip"
    archive.write_bytes(b"<html>Not Found</html>")
    with pytest.raises(SketchDataError, match=r"sketches_svg\.zip: not a readable zip archive"):
        dl.extract_zip(archive, tmp_path / "out")


# ----------------------------------------------------------------------------- CLI

def _cli(*args):
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    return subprocess.run([sys.executable, "-m", "sketchtf.data.download", *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_cli_downloads_and_prints_paths(server, tmp_path, closed_port_url):
    _put(server.root, "simplified/cat.ndjson", _ndjson("cat", 2))
    _put(server.root, "simplified/dog.ndjson", _ndjson("dog", 2))
    r = _cli("--dataset=quickdraw", "--classes=cat,dog", f"--cache_dir={tmp_path}",
             f"--base_url={server.url}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == [str(tmp_path / "quickdraw/simplified/cat.ndjson"),
                                        str(tmp_path / "quickdraw/simplified/dog.ndjson")]
    r = _cli("--dataset=quickdraw", "--classes=sun", f"--cache_dir={tmp_path}",
             f"--base_url={closed_port_url}")
    assert r.returncode != 0 and "error: cannot download" in r.stderr and "read_ndjson" in r.stderr


def test_extract_archive_without_a_top_folder(tmp_path):
    archive = tmp_path / "flat.zip"
    archive.write_bytes(_zip({"cat/1.svg": b"a", "dog/2.svg": b"b"}))
    out = dl.extract_zip(archive, tmp_path / "cache" / "svg")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.svg")) == ["cat/1.svg", "dog/2.svg"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["svg"]
