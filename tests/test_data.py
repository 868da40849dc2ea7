import hashlib
import os
import socket

import numpy as np
import pytest

from idx_helpers import fake_dataset, write_idx

from keras_uap.data import IDX_FILES, read_idx_dataset, rotate_images
from keras_uap.api import load_images
from keras_uap.data import sources
from keras_uap.data.sources import load_raw_dataset
from keras_uap.errors import DataError
from keras_uap.pipelines.data_stage import DATA_STAGE, load_split, random_angles, value_range
from keras_uap.pipelines.runner import run_stage

OFFICIAL_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


def test_real_mnist_is_the_official_data(mnist_dir, mnist_raw):
    for name, md5 in OFFICIAL_MD5.items():
        with open(os.path.join(mnist_dir, name), "rb") as f:
            assert hashlib.md5(f.read()).hexdigest() == md5
    assert mnist_raw["train_images"].shape == (60000, 28, 28)
    assert mnist_raw["test_images"].shape == (10000, 28, 28)
    assert mnist_raw["train_images"].dtype == np.uint8
    assert set(np.unique(mnist_raw["test_labels"])) == set(range(10))


@pytest.mark.parametrize("gz", [False, True])
def test_reads_plain_and_gzipped_idx(tmp_path, gz):
    arrays = fake_dataset(tmp_path, gz=gz)
    read = read_idx_dataset(str(tmp_path))
    for key, array in arrays.items():
        np.testing.assert_array_equal(read[key], array)


@pytest.mark.parametrize("fault,expected", [
    ("missing", "file not found"),
    ("truncated", "truncated"),
    ("magic", "bad IDX magic number"),
    ("count", "labels for"),
    ("label_range", "outside 0-9"),
    ("trailing", "trailing bytes"),
])
def test_corrupt_files_name_the_file_and_the_fault(tmp_path, fault, expected):
    fake_dataset(tmp_path)
    images = tmp_path / IDX_FILES["train_images"]
    labels = tmp_path / IDX_FILES["train_labels"]
    if fault == "missing":
        labels.unlink()
    elif fault == "truncated":
        images.write_bytes(images.read_bytes()[:-100])
    elif fault == "magic":
        write_idx(images, np.zeros((6, 28, 28)), magic_dtype=0x0D)
    elif fault == "count":
        write_idx(labels, np.zeros(5))
    elif fault == "label_range":
        write_idx(labels, np.full(6, 12))
    elif fault == "trailing":
        images.write_bytes(images.read_bytes() + b"xx")
    with pytest.raises(DataError, match=expected) as info:
        read_idx_dataset(str(tmp_path))
    assert "train-" in str(info.value) and "\n" not in str(info.value)


def test_offline_tfds_failure_says_how_to_provide_data(tmp_path, monkeypatch):
    monkeypatch.delenv("KERAS_UAP_DATA_DIR", raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    import tensorflow_datasets as tfds

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to establish a new connection: Network is unreachable")

    # The sandbox has no network; simulate the failure rather than wait for timeouts,
    # past the quick reachability check (as if the name lookup had worked).
    monkeypatch.setattr(tfds, "load", offline)
    monkeypatch.setattr(sources.socket, "getaddrinfo", lambda *args: [])
    with pytest.raises(DataError, match="--data-dir DIR") as info:
        load_raw_dataset("mnist")
    assert "Network is unreachable" in str(info.value)


def test_unreachable_download_host_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.delenv("KERAS_UAP_DATA_DIR", raising=False)
    import tensorflow_datasets as tfds

    def no_name_lookup(*args):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def must_not_run(*args, **kwargs):
        raise AssertionError("tfds.load would retry the download for minutes")

    monkeypatch.setattr(sources.socket, "getaddrinfo", no_name_lookup)
    monkeypatch.setattr(tfds, "load", must_not_run)
    with pytest.raises(DataError, match="storage.googleapis.com cannot be reached") as info:
        load_raw_dataset("mnist")
    assert "--data-dir DIR" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DataError, match="storage.googleapis.com cannot be reached"):
        load_images("mnist")


def test_env_var_is_used_when_no_data_dir_given(tmp_path, monkeypatch):
    arrays = fake_dataset(tmp_path)
    monkeypatch.setenv("KERAS_UAP_DATA_DIR", str(tmp_path))
    raw, source = load_raw_dataset("mnist")
    assert source == str(tmp_path)
    np.testing.assert_array_equal(raw["test_labels"], arrays["test_labels"])


def test_rotation_matches_rot90_and_fills_with_zeros():
    x = np.random.default_rng(0).random((2, 28, 28, 1)).astype("float32")
    for angle, k in [(90, 1), (-90, -1), (180, 2), (0, 0)]:
        rotated = np.asarray(rotate_images(x, np.full(2, angle, "float32")))
        np.testing.assert_allclose(rotated, np.rot90(x, k, axes=(1, 2)), atol=1e-5)
    ones = np.asarray(rotate_images(np.ones((1, 28, 28, 1), "float32"), np.array([45.0], "float32")))
    assert ones[0, 0, 0, 0] == 0.0 and abs(ones[0, 14, 14, 0] - 1.0) < 1e-5


def test_angles_are_uniform_in_range_and_reproducible():
    a = random_angles(3, 1, 10000)
    assert a.min() >= -180 and a.max() <= 180 and abs(a.mean()) < 5
    np.testing.assert_array_equal(a, random_angles(3, 1, 10000))
    assert not np.array_equal(a, random_angles(4, 1, 10000))


def _run_data(tmp_path, mnist_dir, seed, name):
    return run_stage(DATA_STAGE, tmp_path / name, inputs={"source_dir": mnist_dir},
                     params={"dataset": "mnist", "seed": seed, "train_size": 300,
                             "validation_size": 100, "test_size": 200})


def test_data_stage_on_real_mnist(tmp_path, mnist_dir, mnist_raw):
    result = _run_data(tmp_path, mnist_dir, 0, "a")
    test = load_split(result.output_dir, "test")
    val = load_split(result.output_dir, "validation")
    train = load_split(result.output_dir, "train")
    assert test["x"].shape == (200, 28, 28, 1) and test["x"].dtype == np.float32
    assert 0.0 <= test["x"].min() and test["x"].max() <= 1.0
    np.testing.assert_array_equal(test["y"], mnist_raw["test_labels"][:200])
    np.testing.assert_array_equal(val["y"], mnist_raw["train_labels"][:100])
    np.testing.assert_array_equal(train["x"], mnist_raw["train_images"][100:400])
    # The stored images are the raw ones turned by the stored angles.
    raw = mnist_raw["test_images"][:200, :, :, None].astype("float32") / 255
    again = np.clip(np.asarray(rotate_images(raw, test["angle"])), 0, 1)
    np.testing.assert_allclose(test["x"], again, atol=1e-6)
    assert not np.allclose(test["x"], raw)
    with np.load(os.path.join(result.output_dir, "test.npz"), allow_pickle=False) as f:
        assert sorted(f.files) == ["angle", "clip_max", "clip_min", "x", "y"]
        assert value_range(f) == (0.0, 1.0)

    same = load_split(_run_data(tmp_path, mnist_dir, 0, "b").output_dir, "test")
    np.testing.assert_array_equal(same["x"], test["x"])
    other = load_split(_run_data(tmp_path, mnist_dir, 1, "c").output_dir, "test")
    assert not np.array_equal(other["angle"], test["angle"])
