"""save / load: exact round trips, and clear errors (never code execution) for
anything that is not a fastnet network file."""
import io
import json
import os
import pathlib
import pickle
import zipfile

import numpy as np
import pytest

import fastnet
from fastnet.io import FORMAT, FORMAT_VERSION


def _trained(dtype, **options):
    X, y, X_test, _ = fastnet.datasets.load("iris", seed=1)
    net = fastnet.Network([4, 6, 5, 3], activation=["tanh", "relu"], output="softmax",
                          dtype=dtype, seed=3, **options)
    net.fit(X, y, epochs=3)
    return net, X_test


def _write_npz(path, **arrays):
    """An npz written by NumPy itself (pickling allowed, as np.savez does)."""
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def _header(**changes):
    net = fastnet.Network([2, 3, 1])
    header = {"format": FORMAT, "version": FORMAT_VERSION, "config": net.config(),
              "n_params": net.n_params}
    header.update(changes)
    return np.frombuffer(json.dumps(header).encode(), np.uint8), net


# ------------------------------------------------------------ round trip
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_exact(tmp_path, dtype):
    net, X_test = _trained(dtype, init="lecun_uniform")
    path = tmp_path / "net.npz"
    fastnet.save(net, path)
    loaded = fastnet.load(path)
    assert loaded.dtype == net.dtype and loaded.params.dtype == dtype
    np.testing.assert_array_equal(loaded.params, net.params)
    assert loaded.config() == net.config()
    assert (loaded.sizes, loaded.hidden_activations, loaded.output, loaded.loss_name) == \
        (net.sizes, net.hidden_activations, net.output, net.loss_name)
    assert loaded.inits == net.inits == ["lecun_uniform"] * 3
    np.testing.assert_array_equal(loaded.forward(X_test), net.forward(X_test))
    np.testing.assert_array_equal(loaded.predict(X_test), net.predict(X_test))
    assert repr(loaded) == repr(net)


def test_round_trip_through_the_method_and_a_str_path(tmp_path):
    net = fastnet.Network([3, 2], output="sigmoid", dtype=np.float64, seed=9)
    net.params[:] = np.random.default_rng(0).normal(size=net.n_params)
    path = str(tmp_path / "model.npz")
    net.save(path)
    loaded = fastnet.load(path)
    np.testing.assert_array_equal(loaded.params, net.params)
    assert loaded.loss_name == "bce" and loaded.seed == 9


def test_loaded_network_trains_on_like_the_original(tmp_path):
    net, _ = _trained(np.float64)
    fastnet.save(net, tmp_path / "net.npz")
    loaded = fastnet.load(tmp_path / "net.npz")
    X, y, _, _ = fastnet.datasets.load("iris", seed=1)
    net.fit(X, y, epochs=2)
    loaded.fit(X, y, epochs=2)
    np.testing.assert_array_equal(loaded.params, net.params)


def test_save_overwrites_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "net.npz"
    first = fastnet.Network([2, 3, 1], seed=1)
    second = fastnet.Network([2, 3, 1], seed=2)
    fastnet.save(first, path)
    fastnet.save(second, path)
    np.testing.assert_array_equal(fastnet.load(path).params, second.params)
    assert os.listdir(tmp_path) == ["net.npz"]


def test_file_is_plain_arrays(tmp_path):
    """The file is an npz of a JSON header and the params: readable without fastnet."""
    net = fastnet.Network([2, 3, 1])
    fastnet.save(net, tmp_path / "net.npz")
    with np.load(tmp_path / "net.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == ["header", "params"]
        header = json.loads(archive["header"].tobytes().decode())
        np.testing.assert_array_equal(archive["params"], net.params)
    assert header["format"] == FORMAT and header["version"] == FORMAT_VERSION
    assert header["n_params"] == net.n_params


def test_copy_is_independent():
    net = fastnet.Network([2, 3, 1], dtype=np.float32)
    other = net.copy()
    np.testing.assert_array_equal(other.params, net.params)
    assert not np.shares_memory(other.params, net.params)


def test_copy_to_another_dtype():
    net = fastnet.Network([2, 3, 1], dtype=np.float32)
    other = net.copy(dtype=np.float64)
    assert other.dtype == np.float64
    np.testing.assert_array_equal(other.params, net.params.astype(np.float64))
    other.params[0] += 1
    assert other.params[0] != net.params[0]


# ------------------------------------------------------------- bad files
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastnet.load(tmp_path / "nothing.npz")


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, -10])
def test_truncated_file(tmp_path, keep):
    path = tmp_path / "net.npz"
    fastnet.save(fastnet.Network([4, 8, 3]), path)
    data = path.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    path.write_bytes(data[:cut])
    with pytest.raises(ValueError, match="net.npz") as error:
        fastnet.load(path)
    assert "not a readable fastnet network file" in str(error.value)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="noise.npz"):
        fastnet.load(path)


def test_random_bytes_are_not_called_pickled(tmp_path):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="not a .*fastnet network file"):
        fastnet.load(path)


def test_a_npy_file_is_refused(tmp_path):
    path = tmp_path / "params.npy"
    np.save(path, np.zeros(13))
    with pytest.raises(ValueError, match="params.npy"):
        fastnet.load(path)


def test_foreign_npz(tmp_path):
    path = tmp_path / "foreign.npz"
    _write_npz(path, weights=np.zeros(13), bias=np.zeros(1))
    with pytest.raises(ValueError, match="not a fastnet network file") as error:
        fastnet.load(path)
    assert "bias" in str(error.value) and "foreign.npz" in str(error.value)


def test_foreign_zip(tmp_path):
    path = tmp_path / "archive.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="archive.npz"):
        fastnet.load(path)


@pytest.mark.parametrize("changes,words", [
    ({"format": "something-else"}, "not a fastnet network file"),
    ({"version": FORMAT_VERSION + 1}, "newer fastnet"),
    ({"version": "1"}, "version"),
    ({"n_params": 99}, "damaged"),
])
def test_bad_header(tmp_path, changes, words):
    header, net = _header(**changes)
    path = tmp_path / "net.npz"
    _write_npz(path, header=header, params=net.params)
    with pytest.raises(ValueError, match=words):
        fastnet.load(path)


@pytest.mark.parametrize("header", [b"{not json", b"\xff\xfe\x00", b"[1, 2, 3]", b"null"])
def test_header_that_is_not_a_json_object(tmp_path, header):
    path = tmp_path / "net.npz"
    _write_npz(path, header=np.frombuffer(header, np.uint8), params=np.zeros(13))
    with pytest.raises(ValueError, match="net.npz"):
        fastnet.load(path)


def test_params_of_the_wrong_shape_in_the_file(tmp_path):
    header, net = _header()
    path = tmp_path / "net.npz"
    _write_npz(path, header=header, params=net.params.reshape(1, -1))
    with pytest.raises(ValueError, match="damaged"):
        fastnet.load(path)


class _Exploit:
    """Unpickling this creates ``marker``: proof that a file's code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("member", ["params", "header"])
def test_pickled_object_array_is_refused_and_not_run(tmp_path, member):
    marker = tmp_path / "pwned"
    evil = np.empty(1, dtype=object)
    evil[0] = _Exploit(str(marker))
    # sanity: unpickling the payload does run code
    pickle.loads(pickle.dumps(_Exploit(str(tmp_path / "check"))))
    assert (tmp_path / "check").exists()
    header, net = _header()
    arrays = {"header": header, "params": net.params, member: evil}
    path = tmp_path / "evil.npz"
    _write_npz(path, **arrays)   # np.savez pickles object arrays
    with pytest.raises(ValueError, match="pickled") as error:
        fastnet.load(path)
    assert "evil.npz" in str(error.value)
    assert not marker.exists()


def test_bare_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps({"params": _Exploit(str(marker))}))
    with pytest.raises(ValueError, match="evil.npz"):
        fastnet.load(path)
    assert not marker.exists()


def test_object_array_saved_with_np_save_inside_an_npz(tmp_path):
    """An npz member written by np.save(..., allow_pickle=True) by hand."""
    marker = tmp_path / "pwned"
    evil = np.empty(2, dtype=object)
    evil[:] = [_Exploit(str(marker)), 1]
    member = io.BytesIO()
    np.save(member, evil, allow_pickle=True)
    header, _ = _header()
    header_bytes = io.BytesIO()
    np.save(header_bytes, header)
    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("header.npy", header_bytes.getvalue())
        archive.writestr("params.npy", member.getvalue())
    with pytest.raises(ValueError, match="pickled"):
        fastnet.load(path)
    assert not marker.exists()


# ---------------------------------------------------------------- saving
def test_save_into_a_missing_directory(tmp_path):
    path = tmp_path / "no" / "such" / "dir" / "net.npz"
    with pytest.raises(OSError) as error:
        fastnet.save(fastnet.Network([2, 3, 1]), path)
    assert str(path) in str(error.value)
    assert not (tmp_path / "no").exists()


def test_save_onto_a_directory(tmp_path):
    """The target is a directory: an OSError naming it, and no temporary file left."""
    target = tmp_path / "a_directory"
    target.mkdir()
    with pytest.raises(OSError):
        fastnet.save(fastnet.Network([2, 3, 1]), target)
    assert os.listdir(tmp_path) == ["a_directory"]
