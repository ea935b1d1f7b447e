"""The wire codec of openpi's policy protocol: msgpack with numpy arrays as maps.

An array travels as a msgpack map ``{"__ndarray__": True, "data": <raw bytes>, "dtype":
<numpy dtype string, e.g. "<f4">, "shape": [...]}``, a numpy scalar as ``{"__npgeneric__":
True, "data": <value>, "dtype": ...}``. The keys of these maps are packed as msgpack *bin*
strings, exactly as ``openpi_client.msgpack_numpy`` packs them, so each side decodes what
the other encodes (tested against openpi-client itself); :func:`unpackb` also accepts them
as text keys (other languages' clients).

Decoding is strict: a frame that is not msgpack, an array map whose buffer does not fit its
shape, or an object / structured / complex dtype raises :class:`WireError` (never pickle,
never arbitrary objects). Decoded arrays are writable copies.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

__all__ = ["WireError", "packb", "unpackb"]

_NDARRAY, _NPGENERIC = b"__ndarray__", b"__npgeneric__"
_DATA, _DTYPE, _SHAPE = b"data", b"dtype", b"shape"
_REFUSED_KINDS = ("V", "O", "c")  # structured / object / complex: as openpi refuses them


class WireError(ValueError):
    """A message that cannot be encoded or decoded (one-line reason)."""


def _encode(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in _REFUSED_KINDS:
        raise WireError(f"cannot send arrays of dtype {obj.dtype}")
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        return {_NDARRAY: True, _DATA: arr.tobytes(), _DTYPE: arr.dtype.str,
                _SHAPE: list(arr.shape)}
    if isinstance(obj, np.generic):
        return {_NPGENERIC: True, _DATA: obj.item(), _DTYPE: obj.dtype.str}
    raise WireError(f"cannot send a {type(obj).__name__}")


def _field(obj: dict, key: bytes) -> Any:
    return obj[key] if key in obj else obj[key.decode()]


def _decode(obj: dict) -> Any:
    is_array = _NDARRAY in obj or "__ndarray__" in obj
    is_scalar = _NPGENERIC in obj or "__npgeneric__" in obj
    if not (is_array or is_scalar):
        return obj
    try:
        dtype = np.dtype(_field(obj, _DTYPE))
        if dtype.kind in _REFUSED_KINDS or dtype.hasobject:
            raise WireError(f"refused array dtype {dtype}")
        if is_scalar:
            return dtype.type(_field(obj, _DATA))
        shape = tuple(int(n) for n in _field(obj, _SHAPE))
        data = _field(obj, _DATA)
        if not isinstance(data, (bytes, bytearray)):
            raise WireError("array data is not a byte string")
        if any(n < 0 for n in shape) or int(np.prod(shape)) * dtype.itemsize != len(data):
            raise WireError(f"array of shape {shape} and dtype {dtype} does not fit "
                            f"{len(data)} bytes")
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    except WireError:
        raise
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise WireError(f"malformed array map ({type(e).__name__}: {e})") from None


def packb(obj: Any) -> bytes:
    """Encodes a message (dicts, lists, str, numbers, bool, None, numpy arrays / scalars).

    Raises:
        WireError: something in ``obj`` cannot travel (an object array, a custom class).
    """
    try:
        return msgpack.packb(obj, default=_encode, use_bin_type=True)
    except WireError:
        raise
    except (TypeError, ValueError, OverflowError) as e:
        raise WireError(f"cannot encode message: {e}") from None


def unpackb(data: bytes) -> Any:
    """Decodes a message; arrays come back as (writable) numpy arrays.

    Raises:
        WireError: not a msgpack message, or a malformed array map.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError(f"expected a binary frame, got {type(data).__name__}")
    try:
        return msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=False)
    except WireError:
        raise
    except Exception as e:  # noqa: BLE001 - msgpack raises many kinds for garbage
        raise WireError(f"not a msgpack message ({type(e).__name__})") from None
