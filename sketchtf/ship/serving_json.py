"""TF Serving's REST predict JSON <-> signature tensors (row and columnar forms).

Request bodies (https://www.tensorflow.org/tfx/serving/api_rest):
  {"signature_name": "...", "instances": [...]}   row form: one entry per example;
      an entry is {input_name: value, ...}, or the bare value when the
      signature has one input. Instances are stacked, so they must share shapes.
  {"signature_name": "...", "inputs": {...}}      columnar form: a batch per input
      (or the bare batch when the signature has one input).
Binary string values are written {"b64": "<base64>"}.
Responses: {"predictions": [...]} for rows (one dict per example, or the bare
value when there is one output), {"outputs": {...}} for columns.
"""
from __future__ import annotations

import base64
import binascii

import numpy as np


class RequestError(ValueError):
    """A bad request; TF Serving answers these with HTTP 400 {"error": msg}."""


def _decode(value, name):
    if isinstance(value, dict):
        if set(value) != {"b64"}:
            raise RequestError(f"input {name!r}: an object value must be {{\"b64\": ...}}, got keys {sorted(value)}")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, TypeError, ValueError) as e:
            raise RequestError(f"input {name!r}: invalid base64 ({e})") from None
    if isinstance(value, list):
        return [_decode(v, name) for v in value]
    return value


def _strings(arr, name):
    """Every element of a string input must be a string or {"b64": ...}; str is sent as UTF-8."""
    for i, v in enumerate(arr.flat):
        if isinstance(v, str):
            try:
                arr.flat[i] = v.encode("utf-8")
            except UnicodeEncodeError as e:
                raise RequestError(f"input {name!r}: instance {_row(arr, i)}: not valid UTF-8 ({e.reason})") from None
        elif not isinstance(v, bytes):
            raise RequestError(f"input {name!r}: instance {_row(arr, i)}: expected a string or "
                               f'{{"b64": ...}}, got {type(v).__name__}')
    return arr


def _row(arr, flat_index):
    return int(np.unravel_index(flat_index, arr.shape)[0]) if arr.ndim else 0


def _as_array(values, spec, name):
    """Converts a decoded JSON batch to the dtype and checks the rank of spec
    (and, for floats, that every value is finite: NaN/Infinity/1e39 in float32)."""
    dtype = spec.dtype.as_numpy_dtype if spec.dtype.name != "string" else object
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            arr = np.array(values, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as e:
        raise RequestError(f"input {name!r}: cannot convert to {spec.dtype.name} "
                           f"(ragged or mixed values? instances must share a shape): {e}") from None
    if spec.shape.rank is not None and arr.ndim != spec.shape.rank:
        raise RequestError(f"input {name!r}: expected rank {spec.shape.rank} "
                           f"(shape {spec.shape.as_list()}), got shape {list(arr.shape)}")
    for i, (want, got) in enumerate(zip(spec.shape.as_list(), arr.shape)):
        if want is not None and want != got:
            raise RequestError(f"input {name!r}: dimension {i} must be {want}, got {got}")
    if dtype is object:
        return _strings(arr, name)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise RequestError(f"input {name!r}: instance {_row(arr, bad)}: non-finite value "
                           "(NaN, Infinity, or a number beyond float32's range)")
    return arr


def _count(batch, what, max_instances):
    """Checks the number of instances before any conversion work."""
    if max_instances is not None and isinstance(batch, list) and len(batch) > max_instances:
        raise RequestError(f"{what}: {len(batch)} instances, over max_instances={max_instances} "
                           f"(instance {max_instances} is the first over the limit)")


def parse_request(body, input_specs: dict, max_instances: int | None = None) -> dict:
    """Maps a predict request body onto {input_name: numpy batch}.

    input_specs: the signature's structured_input_signature[1] (name -> TensorSpec).
    max_instances: more rows than this is a RequestError (checked before converting).
    """
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows == has_cols:
        raise RequestError('request must have exactly one of "instances" or "inputs"')
    names = sorted(input_specs)
    # {"b64": ...} is decoded for string inputs only (as TF Serving does); numbers go to numpy as they are.
    strings = {n for n in names if input_specs[n].dtype.name == "string"}

    def _decode_in(value, n):
        return _decode(value, n) if n in strings else value

    if has_rows:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise RequestError('"instances" must be a non-empty list')
        _count(rows, '"instances"', max_instances)
        if len(names) == 1 and not (isinstance(rows[0], dict) and set(rows[0]) == {names[0]}):
            columns = {names[0]: [_decode_in(r, names[0]) for r in rows]}
        else:
            columns = {}
            for i, r in enumerate(rows):
                if not isinstance(r, dict) or set(r) != set(names):
                    got = sorted(r) if isinstance(r, dict) else type(r).__name__
                    raise RequestError(f"instance {i}: expected inputs {names}, got {got}")
                for n in names:
                    columns.setdefault(n, []).append(_decode_in(r[n], n))
    else:
        cols = body["inputs"]
        if len(names) == 1 and not (isinstance(cols, dict) and set(cols) == {names[0]}):
            cols = {names[0]: cols}
        if not isinstance(cols, dict) or set(cols) != set(names):
            got = sorted(cols) if isinstance(cols, dict) else type(cols).__name__
            raise RequestError(f'"inputs": expected {names}, got {got}')
        for n in names:
            _count(cols[n], f'"inputs" {n!r}', max_instances)
        columns = {n: _decode_in(cols[n], n) for n in names}
    return {n: _as_array(columns[n], input_specs[n], n) for n in names}


def _jsonable(x):
    x = np.asarray(x)
    if x.dtype == object or x.dtype.kind == "S":
        return np.vectorize(lambda b: b.decode("utf-8") if isinstance(b, bytes) else b, otypes=[object])(x).tolist()
    return x.tolist()


def format_response(outputs: dict, row_format: bool = True) -> dict:
    """Signature outputs (batch-major) -> TF Serving's response JSON."""
    outs = {k: _jsonable(v) for k, v in outputs.items()}
    if not row_format:
        return {"outputs": outs if len(outs) > 1 else next(iter(outs.values()))}
    n = len(next(iter(outs.values())))
    if len(outs) == 1:
        return {"predictions": next(iter(outs.values()))}
    return {"predictions": [{k: v[i] for k, v in outs.items()} for i in range(n)]}
