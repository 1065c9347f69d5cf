"""Tests for bnn_shift.data.text: character-level corpora, tinyshakespeare by default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bnn_shift.data import ChecksumError, DataNotFoundError, TextData, load_text
from bnn_shift.data import text as text_module
from bnn_shift.data.text import ENV_TEXT, TINYSHAKESPEARE, sample_windows

SAMPLE = "To be, or not to be: that is the question.\nWhether 'tis nobler in the mind to suffer\n"


@pytest.fixture(scope="module")
def shakespeare_file(shared_data_dir: Path) -> Path:
    path = shared_data_dir / TINYSHAKESPEARE
    if not path.is_file():
        pytest.skip(f"no {TINYSHAKESPEARE} in {shared_data_dir}")
    return path


@pytest.fixture(scope="module")
def shakespeare(shakespeare_file: Path) -> TextData:
    return load_text(shakespeare_file)


@pytest.fixture
def sample(tmp_path: Path) -> tuple[TextData, str]:
    path = tmp_path / "sample.txt"
    path.write_text(SAMPLE * 3, encoding="utf-8")
    return load_text(path), SAMPLE * 3


def test_tinyshakespeare_sizes_vocab_and_split(shakespeare, shakespeare_file):
    # REFERENCE 6.1: 1,115,394 bytes, all ASCII, so as many characters; 65 distinct.
    assert shakespeare.vocab_size == 65
    assert shakespeare.vocab == tuple(sorted(shakespeare.vocab))
    assert len(shakespeare.train) + len(shakespeare.val) == 1_115_394
    assert len(shakespeare.train) == int(1_115_394 * 0.9) == 1_003_854
    assert shakespeare.name == "tinyshakespeare"
    assert shakespeare.decode(shakespeare.train[:14]) == "First Citizen:"
    text = shakespeare_file.read_text()
    # the split is by position: val is the file's tail
    assert shakespeare.decode(shakespeare.val) == text[1_003_854:]


def test_default_path_is_the_shared_copy(shakespeare_file, monkeypatch):
    monkeypatch.delenv(ENV_TEXT, raising=False)
    monkeypatch.setattr(text_module, "shared_text_path", lambda: shakespeare_file)
    assert load_text().source == str(shakespeare_file)


def test_env_variable_beats_the_shared_copy(tmp_path, monkeypatch):
    path = tmp_path / "corpus.txt"
    path.write_text(SAMPLE)
    monkeypatch.setenv(ENV_TEXT, str(path))
    data = load_text()
    assert data.source == str(path) and data.name == "corpus"
    # an explicit path beats the variable
    other = tmp_path / "other.txt"
    other.write_text("abcabc abc\n" * 3)
    assert load_text(other).source == str(other)


def test_missing_file_names_the_path_option(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_TEXT, raising=False)
    monkeypatch.setattr(text_module, "shared_text_path", lambda: tmp_path / "absent.txt")
    with pytest.raises(DataNotFoundError, match="--path") as err:
        load_text()
    assert ENV_TEXT in str(err.value)
    with pytest.raises(DataNotFoundError, match=r"nope\.txt is not a file"):
        load_text(tmp_path / "nope.txt")
    monkeypatch.setenv(ENV_TEXT, str(tmp_path / "gone.txt"))
    with pytest.raises(DataNotFoundError, match=rf"\${ENV_TEXT}"):
        load_text()


def test_tinyshakespeare_by_name_is_checksummed(tmp_path):
    fake = tmp_path / TINYSHAKESPEARE
    fake.write_text(SAMPLE * 3)
    with pytest.raises(ChecksumError, match="sha256"):
        load_text(fake)
    renamed = tmp_path / "my_text.txt"
    renamed.write_text(SAMPLE * 3)
    assert load_text(renamed).vocab_size == len(set(SAMPLE))


def test_vocab_encode_decode_round_trip(sample):
    data, text = sample
    assert data.vocab == tuple(sorted(set(text)))
    ids = data.encode(text)
    assert ids.dtype == np.int32 and ids.shape == (len(text),)
    assert data.decode(ids) == text
    np.testing.assert_array_equal(np.concatenate([data.train, data.val]), ids)
    assert [data.vocab[i] for i in data.encode("To")] == ["T", "o"]


def test_unicode_text(tmp_path):
    text = "naïve café — ünïcödé ✓ 𝄞 clef\n" * 4
    path = tmp_path / "u.txt"
    path.write_text(text, encoding="utf-8")
    data = load_text(path)
    assert data.vocab == tuple(sorted(set(text)))
    assert data.decode(data.encode(text)) == text


def test_split_is_ninety_ten_by_position(tmp_path):
    path = tmp_path / "hundred.txt"
    path.write_text("abcdefghij" * 10)
    data = load_text(path)
    assert (len(data.train), len(data.val)) == (90, 10)
    assert data.decode(data.val) == "abcdefghij"
    data = load_text(path, val_fraction=0.25)
    assert (len(data.train), len(data.val)) == (75, 25)


def test_batches_are_next_character_windows(sample):
    data, _ = sample
    train_text = data.decode(data.train)
    x, y = data.batch("train", 16, 10, seed=3, step=5)
    assert x.shape == y.shape == (16, 10) and x.dtype == np.int32
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    for row_x, row_y in zip(x, y):
        assert data.decode(row_x) + data.decode(row_y[-1:]) in train_text


def test_batches_are_deterministic_per_seed_and_step(sample):
    data, _ = sample
    a = data.batch("val", 4, 5, seed=1, step=2)
    b = data.batch("val", 4, 5, seed=1, step=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # 4 starts out of len(val) - 5 + ... positions: other steps/seeds differ
    assert not np.array_equal(a[0], data.batch("val", 4, 5, seed=1, step=3)[0])
    assert not np.array_equal(a[0], data.batch("val", 4, 5, seed=2, step=2)[0])
    stream = data.batches("train", 3, 4, seed=7, start=10)
    for step in range(10, 13):
        np.testing.assert_array_equal(
            next(stream)[0], data.batch("train", 3, 4, seed=7, step=step)[0]
        )


def test_every_start_is_reachable():
    tokens = np.arange(6, dtype=np.int32)
    x, y = sample_windows(tokens, 400, 2, np.random.default_rng(0))
    # windows of 2 plus a next token: starts 0..3 only, all of them drawn
    assert set(x[:, 0].tolist()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(y, x + 1)


def test_eval_windows_are_consecutive(sample):
    data, _ = sample
    x, y = data.eval_windows("val", 4)
    n = (len(data.val) - 1) // 4
    assert x.shape == (n, 4)
    np.testing.assert_array_equal(x.ravel(), data.val[: 4 * n])
    np.testing.assert_array_equal(y.ravel(), data.val[1 : 4 * n + 1])
    assert data.eval_windows("val", 4, max_windows=2)[0].shape == (2, 4)


def test_bad_requests_raise(sample, tmp_path):
    data, _ = sample
    with pytest.raises(ValueError, match="too few"):
        data.batch("val", 2, len(data.val), seed=0)
    with pytest.raises(ValueError, match="unknown split"):
        data.batch("test", 2, 3, seed=0)
    with pytest.raises(ValueError, match=r"\['Z'\] are not in"):
        data.encode("Zoo")
    with pytest.raises(ValueError, match="val_fraction"):
        load_text(data.source, val_fraction=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        data.batch("train", 0, 3, seed=0)
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("abc")
    with pytest.raises(ValueError, match="too few to split"):
        load_text(tiny)
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"abc\xff\xfedef")
    with pytest.raises(ValueError, match="not UTF-8 text \\(byte 3"):
        load_text(binary)
