"""FineWeb-Edu as token shards on disk, and ``ShardedDataLoader`` to stream batches from them.

    python -m lessons_lib.fineweb --out data/fineweb_edu_10B               # sample-10BT from the hub
    python -m lessons_lib.fineweb --out data/mine --input a.jsonl b.parquet --shard-size 1_000_000

Ten billion tokens do not fit in memory as int64, nor should they be re-tokenized every run: we
tokenize once, in parallel processes, into uint16 ``.npy`` shards of ``shard_size`` tokens
(GPT-2's 50,257 ids fit in 16 bits), with ``<|endoftext|>`` before every document so the model
learns where one text ends. Shard 0 is validation (``fineweb_val_000000.npy``), the rest training
(``fineweb_train_000001.npy``, ...). A document that does not fit continues in the next shard, so
every shard but the last is full.

Preparing takes hours, so it resumes: each shard is written to a temporary file and renamed, then
``progress.json`` records how many documents (and tokens of a split one) are on disk. A rerun
with the same ``--out`` skips those documents and carries on; killed at any moment, it produces
the same shards as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .assets import AssetUnavailableError, atomic_write, jsonl_records, offline, utf8_lines
from .cli import command, parser, positive
from .data import DataLoaderLite
from .tokenizer import EOT_TOKEN, get_encoding
from .utils import NON_NEGATIVE, UserError, positive_int

HUB_DATASET, HUB_SUBSET = "HuggingFaceFW/fineweb-edu", "sample-10BT"
SHARD_SIZE = 100_000_000
PROGRESS_FILE = "progress.json"
INPUT_SUFFIXES = (".txt", ".jsonl", ".parquet")
PREPARE_HINT = "python -m lessons_lib.fineweb --out DIR [--input FILES...]"


class ShardError(UserError):
    """A shard folder is missing, or a shard in it is corrupt or too small to use."""


# --- documents ---------------------------------------------------------------------------------


def hub_documents(dataset: str = HUB_DATASET, subset: str = HUB_SUBSET) -> Iterator[str]:
    """The "text" of every document of a Hugging Face dataset, streamed (nothing big is stored)."""
    hint = f"Without internet, prepare shards from local files instead: {PREPARE_HINT}"
    if offline():
        raise AssetUnavailableError(f"LESSONS_OFFLINE is set, so {dataset} was not streamed. {hint}")
    try:
        import datasets
    except ImportError as exc:
        raise AssetUnavailableError(
            f"Streaming {dataset} needs `datasets`: pip install -e '.[data]' (or datasets). {hint}"
        ) from exc
    try:
        for row in datasets.load_dataset(dataset, name=subset, split="train", streaming=True):
            yield row["text"]
    except Exception as exc:  # network failures come as requests, httpx and hub errors alike
        raise AssetUnavailableError(
            f"Could not stream {dataset} ({subset}): {type(exc).__name__}: {exc}. {hint}"
        ) from exc


def _expand(paths: Iterable[str | os.PathLike]) -> list[Path]:
    paths, files = [Path(p) for p in paths], []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix in INPUT_SUFFIXES and f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"Input {p} does not exist.")
    for f in files:
        if f.suffix not in INPUT_SUFFIXES:
            raise UserError(f"Input {f} is not one of {', '.join(INPUT_SUFFIXES)}; convert it first.")
    if not files:
        raise UserError(f"No {'/'.join(INPUT_SUFFIXES)} files in {[str(p) for p in paths]}.")
    return files


def _jsonl_documents(path: Path) -> Iterator[str]:
    for number, record in jsonl_records(path):
        if not isinstance(record, dict) or "text" not in record:
            raise UserError(
                f'{path} line {number} is not a JSON object with a "text" field: {json.dumps(record)[:80]}'
            )
        text = record["text"]
        if not isinstance(text, str):
            raise UserError(f'{path} line {number}: "text" is a {type(text).__name__}, not a string.')
        yield text


def _parquet_documents(path: Path) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        if "text" not in parquet.schema_arrow.names:
            raise UserError(f'{path} has no "text" column (columns: {parquet.schema_arrow.names}).')
        row = 0
        for batch in parquet.iter_batches(columns=["text"], batch_size=1024):
            for text in batch.column(0).to_pylist():
                if not isinstance(text, str):
                    raise UserError(f'{path} row {row}: "text" is {text!r:.40}, not a string.')
                yield text
                row += 1
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path} is not a readable parquet file ({exc}).") from exc


def file_documents(paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Documents from local files, in the order given (folders: their files, sorted).

    ``.txt``: the whole file is one document. ``.jsonl``: one JSON object per line, its "text"
    field (blank lines skipped). ``.parquet``: the "text" column (needs pyarrow). All text is UTF-8.
    """
    files = _expand(paths)
    if any(f.suffix == ".parquet" for f in files) and importlib.util.find_spec("pyarrow") is None:
        raise AssetUnavailableError(
            "Reading .parquet files needs pyarrow: pip install -e '.[data]' (or pyarrow)."
        )
    for path in files:
        if path.suffix == ".txt":
            yield "".join(line for _, line in utf8_lines(path))
        elif path.suffix == ".jsonl":
            yield from _jsonl_documents(path)
        else:
            yield from _parquet_documents(path)


# --- shards ------------------------------------------------------------------------------------


def shard_name(index: int) -> str:
    return f"fineweb_{'val' if index == 0 else 'train'}_{index:06d}.npy"


def _tokenize(doc: str) -> np.ndarray:
    if not isinstance(doc, str):
        raise TypeError(f"Documents must be strings, got {type(doc).__name__}: {doc!r:.80}")
    return np.array([EOT_TOKEN, *get_encoding().encode_ordinary(doc)], dtype=np.uint16)


def _read_progress(out_dir: Path, shard_size: int, source: str) -> dict:
    fresh = {
        "shard_size": shard_size,
        "source": source,
        "next_shard": 0,
        "documents": 0,
        "doc_offset": 0,
        "tokens": 0,
        "complete": False,
    }
    path = out_dir / PROGRESS_FILE
    if not path.is_file():
        if any(out_dir.glob("fineweb_*.npy")):  # a fresh start would mix new shards with these
            raise UserError(
                f"{out_dir} holds shards but no {PROGRESS_FILE}, so what made them is unknown. Choose "
                "another output folder, or delete those shards to start over."
            )
        return fresh
    try:
        state = json.loads(path.read_bytes())
        wrong = [  # of another type than in a fresh state, or a negative count
            k for k, v in fresh.items() if type(state[k]) is not type(v) or (type(v) is int and state[k] < 0)
        ]
        problem = f"wrong values for {', '.join(wrong)}" if wrong else ""
    except (ValueError, TypeError, KeyError) as exc:  # JSON and UTF-8 errors are ValueErrors
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        raise UserError(
            f"{path} is damaged, truncated or edited ({problem}). It records how far an earlier run "
            f"got; without it the shards in {out_dir} cannot be resumed: delete the folder to start over."
        )
    for key in ("shard_size", "source"):
        if state[key] != fresh[key]:
            raise UserError(
                f"{out_dir} holds shards made with {key}={state[key]!r}, not {fresh[key]!r}. "
                "Use another output folder, or delete this one to start over."
            )
    return state


def _save_progress(out_dir: Path, state: dict) -> None:
    atomic_write(out_dir / PROGRESS_FILE, lambda f: f.write(json.dumps(state, indent=1).encode()))


def prepare_shards(
    documents: Iterable[str],
    out_dir: str | os.PathLike,
    shard_size: int = SHARD_SIZE,
    workers: int | None = None,
    limit_docs: int | None = None,
    source: str = "documents",
    progress: bool = True,
) -> list[Path]:
    """Tokenize ``documents`` into uint16 shards in ``out_dir`` and return their paths, in order.

    ``workers`` processes tokenize (None: one per CPU; 1: here, without a pool).
    ``limit_docs`` stops after that many documents. Reruns resume from ``progress.json`` and must
    pass the same documents in the same order; ``source`` names them so a different input is
    refused rather than silently spliced on. Shard 0 is validation, so a training split needs at
    least ``shard_size`` tokens plus one more.
    """
    positive_int("shard_size (tokens per shard)", shard_size)
    if limit_docs is not None:
        NON_NEGATIVE.check("limit_docs", limit_docs)
    workers = workers or os.cpu_count() or 1
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} is a file; give a folder for the shards.")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".fineweb_*.tmp"):  # left by a run killed mid-write
        stale.unlink()
    state = _read_progress(out_dir, shard_size, source)
    if not state["complete"]:
        docs = itertools.islice(documents, state["documents"], limit_docs)
        get_encoding()  # fail here, not in a worker, without the tokenizer; forked workers inherit it
        with Pool(workers) if workers > 1 else nullcontext() as pool:
            token_arrays = pool.imap(_tokenize, docs, chunksize=16) if pool else map(_tokenize, docs)
            _write_shards(token_arrays, out_dir, state, progress)
    return [out_dir / shard_name(i) for i in range(state["next_shard"])]


def _write_shards(token_arrays: Iterable[np.ndarray], out_dir: Path, state: dict, progress: bool) -> None:
    """Fill one shard buffer, writing it and then ``progress.json`` each time it is full."""
    size = state["shard_size"]
    buf, fill = np.empty(size, dtype=np.uint16), 0

    def flush(documents: int, doc_offset: int, complete: bool = False) -> None:
        atomic_write(out_dir / shard_name(state["next_shard"]), lambda f: np.save(f, buf[:fill]))
        state.update(
            next_shard=state["next_shard"] + 1,
            documents=documents,
            doc_offset=doc_offset,
            tokens=state["tokens"] + fill,
            complete=complete,
        )
        _save_progress(out_dir, state)

    doc, skip = state["documents"], state["doc_offset"]  # resume inside a split document
    bar = tqdm(desc="tokens", unit="tok", unit_scale=True, initial=state["tokens"], disable=not progress)
    with bar:
        for tokens in token_arrays:
            pos, skip = skip, 0
            while pos < len(tokens):
                n = min(size - fill, len(tokens) - pos)
                buf[fill : fill + n] = tokens[pos : pos + n]
                fill, pos = fill + n, pos + n
                bar.update(n)
                if fill == size:
                    done = pos == len(tokens)
                    flush(doc + done, 0 if done else pos)
                    fill = 0
                    bar.set_postfix(shards=state["next_shard"])
            doc += 1
    if fill:
        flush(doc, 0, complete=True)
    elif state["next_shard"] == 0:
        raise UserError("No documents to tokenize: the input is empty.")
    else:  # the last document ended exactly on a shard boundary
        state["complete"] = True
        _save_progress(out_dir, state)


# --- loading -----------------------------------------------------------------------------------


def shard_paths(data_dir: str | os.PathLike, split: str) -> list[Path]:
    """The shards of one split, in order; a clear error when there are none."""
    if split not in {"train", "val"}:
        raise ValueError(f"split={split!r}; choose 'train' or 'val'.")
    data_dir = Path(data_dir)
    create = f"Create them with: {PREPARE_HINT.replace('DIR', str(data_dir))}"
    if not data_dir.is_dir():
        raise ShardError(f"No shard folder {data_dir}. {create}")
    paths = sorted(data_dir.glob(f"fineweb_{split}_*.npy"))
    if not paths:
        raise ShardError(
            f"No {split} shards (fineweb_{split}_*.npy) in {data_dir}. {create}"
            + (" and more tokens than one shard (shard 0 is validation)." if split == "train" else "")
        )
    return paths


def load_shard(path: Path) -> np.ndarray:
    """A shard as a read-only memory map: opening one costs nothing, pages load as batches need them."""
    try:
        tokens = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ShardError(f"{path} is not a readable .npy shard (truncated or corrupt?): {exc}") from exc
    if tokens.dtype != np.uint16 or tokens.ndim != 1:
        raise ShardError(
            f"{path} holds a {tokens.dtype} array of shape {tokens.shape}, not a 1-D uint16 token "
            f"stream. Recreate it with: {PREPARE_HINT}"
        )
    return tokens


class ShardedDataLoader(DataLoaderLite):
    """``DataLoaderLite`` over a folder of shards: the same batches, rank split, wrap-around and
    state, with each shard a read-only memory map of its ``.npy`` file (``split`` picks the
    ``fineweb_train_*`` or ``fineweb_val_*`` shards)."""

    error = ShardError

    def __init__(
        self,
        B: int,
        T: int,
        data_dir: str | os.PathLike,
        split: str = "train",
        process_rank: int = 0,
        num_processes: int = 1,
    ) -> None:
        super().__init__(B, T, shard_paths(data_dir, split), process_rank, num_processes)

    def load(self, i: int) -> np.ndarray:
        return load_shard(self.shards[i])

    def name(self, i: int) -> str:
        return str(self.shards[i])


@command("fineweb")
def main(argv: list[str] | None = None) -> list[Path]:
    p = parser("fineweb", "Tokenize FineWeb-Edu (or local files) into uint16 token shards; a rerun resumes.")
    p.add_argument("--out", required=True, help="folder for the shards (a rerun resumes in it)")
    p.add_argument(
        "--input",
        nargs="+",
        help="files or folders: .txt (one document each), .jsonl, .parquet (default: the hub)",
    )
    p.add_argument("--shard-size", type=positive, default=SHARD_SIZE, help="tokens per shard")
    p.add_argument(
        "--workers", type=positive, default=None, help="tokenizer processes (default: one per CPU)"
    )
    p.add_argument("--limit-docs", type=positive, default=None, help="stop after this many documents")
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar"
    )
    args = p.parse_args(argv)
    if args.input:
        files = _expand(args.input)
        documents, source = file_documents(files), json.dumps([str(f.resolve()) for f in files])
    else:
        documents, source = hub_documents(), f"{HUB_DATASET}:{HUB_SUBSET}"
    paths = prepare_shards(
        documents, args.out, args.shard_size, args.workers, args.limit_docs, source, args.progress
    )
    print(f"{len(paths)} shard(s) in {args.out}: 1 validation, {len(paths) - 1} training")
    return paths


if __name__ == "__main__":
    main()
