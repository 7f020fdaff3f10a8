"""`--out-format llava-json|llava-jsonl`: selected records as LLaVA records, whatever the input's format.

Each record becomes `{"id", "image" | "images", "conversations": [{"from", "value"}], ...}`. Images stored inside
the input (Parquet / Arrow cells, tar members) are written to the folder `OUT_STEM_images/` beside the output,
one file per distinct image named by its content hash, and the records name them relative to the output's folder
(so `mmselect select OUT` finds them with the default images root). A JSON input's image paths are kept as they
are (they stay relative to the same images root). The other scalar columns of a table row (e.g. `data_source`)
are kept as fields. The records are written last, after every image, each file atomically.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import orjson

from selector.core.arrow_numpy import to_arrow
from selector.core.compressed import compress, compression_for_output
from selector.core.embedded import image_file, is_ref
from selector.core.errors import FormatError
from selector.core.formats import CC_SBU_INSTRUCTION
from selector.core.io import OutputError, atomic_write
from selector.core.records import RecordSet, record_bytes, id_value

_MAGIC = ((b"\x89PNG", ".png"), (b"\xff\xd8", ".jpg"), (b"GIF8", ".gif"), (b"BM", ".bmp"), (b"II*\x00", ".tif"),
          (b"MM\x00*", ".tif"))


def image_extension(data: bytes) -> str:
    """A file extension for image bytes, from their magic number."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    return ".img"


def _with_image_tokens(conv: list, n_images: int) -> list:
    """LLaVA's convention: the first user turn carries one `<image>` per image (added where none is written)."""
    if n_images == 0 or any(isinstance(t, dict) and "<image>" in str(t.get("value", "")) for t in conv):
        return conv
    conv = [dict(t) if isinstance(t, dict) else t for t in conv]
    for t in conv:
        if isinstance(t, dict) and t.get("from", t.get("role")) in ("human", "user"):
            key = "value" if "value" in t or "content" not in t else "content"
            t[key] = "<image>\n" * n_images + str(t.get(key) or "")
            break
    return conv


def _table_rows(records: RecordSet, rows: np.ndarray) -> Iterator[tuple[dict, list]]:
    """(fields without text and image columns, conversations) of each kept table row, in order."""
    from selector.core.parquet_records import row_conversation, iter_rows

    layout = records.meta["table_layout"]
    skip = {layout.text_column, *layout.image_columns}
    for batch in iter_rows(records, rows):
        texts = batch.column(layout.text_column).to_pylist()
        others = {name: batch.column(name).to_pylist() for name in batch.schema.names if name not in skip}
        for i, text in enumerate(texts):
            conv = row_conversation(text, layout.kind)
            fields = {k: v[i] for k, v in others.items() if isinstance(v[i], (str, int, float, bool)) or v[i] is None}
            yield fields, conv if isinstance(conv, list) else []


def _webdataset_rows(records: RecordSet, rows: np.ndarray) -> Iterator[tuple[dict, list]]:
    texts = records.meta["texts"]
    table = records.table
    for row in rows.tolist():
        shard, offset, size = texts[row]
        with open(records.files[shard], "rb") as f:
            f.seek(offset)
            data = f.read(size)
        obj: Any = None
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
        if isinstance(obj, dict) and isinstance(obj.get("conversations"), list):
            fields = {k: v for k, v in obj.items() if k not in ("conversations", "image", "images")}
            yield fields, obj["conversations"]
        else:
            answer = table.column("answer")[row].as_py()
            fields = {k: v for k, v in obj.items() if k not in ("caption", "text", "image", "images")} \
                if isinstance(obj, dict) else {}
            yield fields, [{"from": "human", "value": CC_SBU_INSTRUCTION}, {"from": "gpt", "value": answer}]


def _json_rows(records: RecordSet, rows: np.ndarray) -> Iterator[tuple[dict, list]]:
    schema = records.layout.schema
    if schema == "messages":
        raise FormatError("--out-format llava-*: OpenAI messages records are not converted; keep --out-format same")
    table = records.table
    for row, data in zip(rows.tolist(), record_bytes(records.byte_path, table)(rows)):
        obj = orjson.loads(data)
        if schema == "cc_sbu":
            yield {}, [{"from": "human", "value": CC_SBU_INSTRUCTION}, {"from": "gpt", "value": obj.get("caption")}]
        else:
            yield {k: v for k, v in obj.items() if k not in ("conversations", "image", "images")}, obj["conversations"]


def export_llava(records: RecordSet, rows: np.ndarray, out: Path, jsonl: bool) -> Path:
    """Write the records at `rows` (ascending) as LLaVA JSON (a list) or JSONL; see the module docstring."""
    out = Path(out)
    container = records.layout.container
    reader = _table_rows if container in ("parquet", "arrow") else \
        _webdataset_rows if container == "webdataset" else _json_rows
    take = to_arrow(np.asarray(rows, np.int64))
    ids = records.table.column("id").take(take).to_pylist()
    kinds = records.table.column("id_kind").take(take).to_pylist()
    names = records.table.column("images").take(take).to_pylist()
    folder = out.parent / f"{out.name.split('.')[0]}_images"
    if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
        raise OutputError(f"{folder}, where the selection's embedded images go, is not a folder; move it or choose "
                          "another --out")
    written: set[str] = set()
    items: list[bytes] = []
    for k, (fields, conv) in enumerate(reader(records, np.asarray(rows, np.int64))):
        images = []
        for name in names[k]:
            if not is_ref(name):
                images.append(name)
                continue
            data = image_file(None, name).read()
            file = hashlib.blake2b(data, digest_size=16).hexdigest() + image_extension(data)
            if file not in written:
                atomic_write(folder / file, [data])
                written.add(file)
            images.append(f"{folder.name}/{file}")
        record = {"id": id_value(ids[k], kinds[k]), **{f: v for f, v in fields.items() if f != "id"}}
        if len(images) == 1:
            record["image"] = images[0]
        elif images:
            record["images"] = images
        record["conversations"] = _with_image_tokens(conv, len(images)) if any(is_ref(n) for n in names[k]) else conv
        items.append(orjson.dumps(record))
    kind = compression_for_output(out)
    if jsonl:
        atomic_write(out, compress((item + b"\n" for item in items), kind))
    else:
        atomic_write(out, compress([b"[\n", b",\n".join(items), b"\n]\n"], kind))
    return out


def write_llava_json(records: RecordSet, rows: np.ndarray, out: Path) -> Path:
    return export_llava(records, rows, out, jsonl=False)


def write_llava_jsonl(records: RecordSet, rows: np.ndarray, out: Path) -> Path:
    return export_llava(records, rows, out, jsonl=True)
