"""NumPy <-> Arrow conversions without pyarrow's pandas bridge, and the selection path that relies on them."""
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from selector.core.arrow_numpy import scalar, strings, to_arrow, to_numpy


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint64, np.float32, np.float64])
def test_numbers_round_trip_and_match_pyarrow(dtype):
    values = (np.arange(11) * 7 - 20).astype(dtype)
    arr = to_arrow(values)
    assert arr.equals(pa.array(values))
    assert np.array_equal(to_numpy(arr), values)
    assert np.array_equal(to_numpy(arr.slice(3, 5)), values[3:8])  # a slice reads from its own offset


def test_booleans_pack_and_unpack_at_any_bit_offset():
    mask = np.random.default_rng(0).random(37) < 0.5
    arr = to_arrow(mask)
    assert arr.to_pylist() == mask.tolist()
    for start in range(9):
        assert np.array_equal(to_numpy(arr.slice(start, 20)), mask[start:start + 20])


def test_nulls_need_a_fill_value():
    values, missing = np.array([1.5, 2.5, 3.5]), np.array([False, True, False])
    arr = to_arrow(values, mask=missing)
    assert arr.to_pylist() == [1.5, None, 3.5]
    with pytest.raises(ValueError, match="1 nulls"):
        to_numpy(arr)
    out = to_numpy(arr, null=np.nan)
    assert out[0] == 1.5 and np.isnan(out[1]) and out[2] == 3.5
    assert to_numpy(pa.array([True, None, False]), null=True).tolist() == [True, True, False]


def test_chunked_columns_concatenate_in_order():
    col = pa.chunked_array([pa.array([1, 2]), pa.array([], pa.int64()), pa.array([3])])
    assert to_numpy(col).tolist() == [1, 2, 3]
    assert to_numpy(pa.chunked_array([], pa.int64())).dtype == np.int64


def test_strings_keep_nulls_and_unicode():
    values = ["a", None, "", "größe ✓", "x" * 1000]
    arr = strings(values)
    assert arr.type == pa.string() and arr.to_pylist() == values
    assert arr.equals(pa.array(values, pa.string()))


def test_scalars_carry_their_type():
    assert scalar("") == pa.scalar("") and scalar(3).type == pa.int64() and scalar(True).as_py() is True
    assert scalar(np.int32(0)).type == pa.int32()


def test_a_selection_never_imports_pandas(tmp_path):
    """pyarrow's NumPy bridge imports pandas (0.2-0.4 s); the select path must not trigger it."""
    lines = [f'{{"id": "r{i}", "image": "{i}.png", "conversations": [{{"from": "human", "value": "<image>\\nq {i}"}}, '
             f'{{"from": "gpt", "value": "{"answer " * (i % 7 + 1)}"}}]}}' for i in range(50)]
    lines += ['not json', '{"id": "r1", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}',
              '{"id": "e", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": " "}]}']
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    from PIL import Image
    for i in range(50):
        Image.new("RGB", (4, 4)).save(tmp_path / f"{i}.png")
    code = (f"import sys\nfrom selector.app.pipeline import SelectConfig, run_select\n"
            f"r = run_select(SelectConfig(input={str(tmp_path / 'd.jsonl')!r}, out={str(tmp_path / 'o.jsonl')!r}, "
            f"budget=5, metrics=('length',), progress=False, workers=1))\n"
            f"print(r.accounting.line(), 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "read 53, rejected 3, selected 5, not selected 45 False"
