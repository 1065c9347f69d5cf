"""Character-level text: any UTF-8 file, tinyshakespeare by default (REFERENCE 6.1, 6.3).

The file comes from `path`, else $BNN_SHIFT_TEXT, else the shared copy
`<repo>/../shared/data/tinyshakespeare.txt` when the checkout has one. A file named
tinyshakespeare*.txt must match the recorded sha256. The vocabulary is every distinct character
of the whole file, sorted; the first 90% of the characters (by position) train, the rest validate.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnn_shift.data.cache import file_digest
from bnn_shift.data.errors import ChecksumError, DataNotFoundError

ENV_TEXT = "BNN_SHIFT_TEXT"
TINYSHAKESPEARE = "tinyshakespeare.txt"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINYSHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
VAL_FRACTION = 0.1
SPLITS = ("train", "val")


def shared_text_path() -> Path:
    """Where a checkout with a sibling `shared/` keeps tinyshakespeare."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / TINYSHAKESPEARE


@dataclass(frozen=True, eq=False)
class TextData:
    """A character-level corpus: sorted vocabulary and the train/val token ids.

    `train` and `val` are (n,) int32 ids into `vocab`; `source` is the file read.
    """

    name: str
    vocab: tuple[str, ...]
    train: np.ndarray  # (n_train,) int32
    val: np.ndarray  # (n_val,) int32
    source: str = ""

    def __post_init__(self) -> None:
        if len(set(self.vocab)) != len(self.vocab) or any(len(c) != 1 for c in self.vocab):
            raise ValueError("vocab must be distinct single characters")
        for split in SPLITS:
            ids = np.asarray(getattr(self, split))
            if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
                raise ValueError(f"{split} must be a 1-d integer array, got {ids.dtype}{ids.shape}")
            if ids.size and (ids.min() < 0 or ids.max() >= len(self.vocab)):
                raise ValueError(f"{split} holds ids outside [0, {len(self.vocab)})")
            object.__setattr__(self, split, ids.astype(np.int32))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _codes(self) -> np.ndarray:  # (vocab_size,) uint32 code points, sorted
        return np.array([ord(c) for c in self.vocab], np.uint32)

    def encode(self, text: str) -> np.ndarray:
        """str -> (len(text),) int32 ids; characters outside the vocabulary are an error."""
        codes = _code_points(text)
        vocab = self._codes()
        ids = np.minimum(np.searchsorted(vocab, codes), len(vocab) - 1)
        unknown = vocab[ids] != codes
        if np.any(unknown):
            chars = sorted({chr(c) for c in codes[unknown]})
            raise ValueError(f"characters {chars} are not in the {self.name} vocabulary")
        return ids.astype(np.int32)

    def decode(self, ids) -> str:
        """(n,) ids -> str."""
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"decode takes a 1-d id array, got shape {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"ids must lie in [0, {self.vocab_size}) to decode")
        return self._codes()[ids].astype("<u4").tobytes().decode("utf-32-le")

    def tokens(self, split: str) -> np.ndarray:
        """The (n,) ids of "train" or "val"."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        return getattr(self, split)

    def batch(
        self, split: str, batch_size: int, context_length: int, *, seed: int, step: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Random windows of `split`: x (batch_size, T) ids and y (batch_size, T) the next
        characters (x shifted by one). Batch `step` of `seed` is the same on every call."""
        return sample_windows(
            self.tokens(split), batch_size, context_length, np.random.default_rng([seed, step])
        )

    def batches(
        self, split: str, batch_size: int, context_length: int, *, seed: int, start: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Endless `batch(split, ..., seed=seed, step=i)` for i = start, start + 1, ..."""
        step = start
        while True:
            yield self.batch(split, batch_size, context_length, seed=seed, step=step)
            step += 1

    def eval_windows(
        self, split: str, context_length: int, max_windows: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Consecutive non-overlapping windows from the start of `split`, for a deterministic
        loss estimate: x, y (n, T) with n = (len - 1) // T, capped at `max_windows`."""
        tokens = self.tokens(split)
        _check_window(split, len(tokens), context_length)
        n = (len(tokens) - 1) // context_length
        if max_windows is not None:
            n = min(n, max_windows)
        starts = np.arange(n) * context_length
        return _gather(tokens, starts, context_length)


def _code_points(text: str) -> np.ndarray:  # (len(text),) uint32
    return np.frombuffer(text.encode("utf-32-le"), np.uint32)


def _check_window(split: str, n_tokens: int, context_length: int) -> None:
    if context_length < 1:
        raise ValueError(f"context_length must be >= 1, got {context_length}")
    if n_tokens < context_length + 1:
        raise ValueError(
            f"the {split} split has {n_tokens} characters, too few for a window of "
            f"context_length={context_length} plus its next character; use a shorter context"
        )


def _gather(
    tokens: np.ndarray, starts: np.ndarray, context_length: int
) -> tuple[np.ndarray, np.ndarray]:
    index = starts[:, None] + np.arange(context_length)[None, :]  # (b, T)
    return tokens[index], tokens[index + 1]


def sample_windows(
    tokens: np.ndarray, batch_size: int, context_length: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(n,) ids -> x, y (batch_size, T): windows at uniform random starts, y = next characters."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _check_window("token", len(tokens), context_length)
    starts = rng.integers(0, len(tokens) - context_length, size=batch_size)
    return _gather(tokens, starts, context_length)


def resolve_text_path(path: str | Path | None = None) -> Path:
    """The file to read: `path`, else $BNN_SHIFT_TEXT, else the shared tinyshakespeare copy."""
    if path is not None:
        candidate, origin = Path(path).expanduser(), "path"
    elif os.environ.get(ENV_TEXT):
        candidate, origin = Path(os.environ[ENV_TEXT]).expanduser(), f"${ENV_TEXT}"
    else:
        candidate = shared_text_path()
        if not candidate.is_file():
            raise DataNotFoundError(
                f"no text file given and no shared tinyshakespeare copy at {candidate}.\n{_HOW_TO}"
            )
        return candidate
    if not candidate.is_file():
        raise DataNotFoundError(f"{origin} {candidate} is not a file.\n{_HOW_TO}")
    return candidate


_HOW_TO = (
    "Provide a text file (any UTF-8 text works) in one of these ways:\n"
    "  - pass --path FILE on the command line, or path=FILE to load_text;\n"
    f"  - set {ENV_TEXT}=FILE;\n"
    f"  - for tinyshakespeare, download {TINYSHAKESPEARE_URL} (sha256 {TINYSHAKESPEARE_SHA256})."
)


def _verify_known(path: Path) -> None:
    """Files named like tinyshakespeare must be the recorded one."""
    if not path.name.lower().startswith("tinyshakespeare"):
        return
    got = file_digest(path)
    if got != TINYSHAKESPEARE_SHA256:
        raise ChecksumError(
            f"{path} is named like tinyshakespeare but its sha256 is {got}, expected "
            f"{TINYSHAKESPEARE_SHA256}; re-download it or rename the file if it is another text"
        )


def load_text(
    path: str | Path | None = None,
    *,
    val_fraction: float = VAL_FRACTION,
    name: str | None = None,
) -> TextData:
    """Read a UTF-8 text file as characters: sorted vocabulary over the whole file; the first
    (1 - val_fraction) of the characters by position train, the rest validate."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    path = resolve_text_path(path)
    _verify_known(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not UTF-8 text (byte {err.start}: {err.reason}); convert it to UTF-8"
        ) from err
    codes = _code_points(text)
    vocab, ids = np.unique(codes, return_inverse=True)
    n_train = int(len(ids) * (1.0 - val_fraction))
    if n_train < 2 or len(ids) - n_train < 2:
        raise ValueError(
            f"{path} has {len(ids)} characters: too few to split {1 - val_fraction:.0%} / "
            f"{val_fraction:.0%} with at least 2 characters on each side"
        )
    ids = ids.astype(np.int32)
    return TextData(
        name=name or path.stem,
        vocab=tuple(chr(c) for c in vocab),
        train=ids[:n_train],
        val=ids[n_train:],
        source=str(path),
    )
