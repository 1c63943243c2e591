"""RLE Lossless (PS3.5 Annex G) for 8-bit monochrome frames that are zero outside a band of rows.

The Grad-CAM FRACTIONAL SEG (``pipelines.dicom_out.heatmap``) holds one full-size frame per map, zero outside the
map's crop: uncompressed 10-30 MB a study, RLE a few hundred kB. Encoding a whole 2000 x 1500 frame with
pylibjpeg-rle costs 40-60 ms here; ``encode_frame`` encodes only the rows that hold a non-zero pixel (pylibjpeg-rle)
and writes every all-zero row as the same precomputed PackBits row, so a frame costs a few ms. Each row is
encoded on its own (as Annex G asks), so the concatenation is the PackBits stream of the whole frame; pydicom,
pylibjpeg-rle, DCMTK and dcmjs decode it as any RLE frame (tests decode it back with pydicom).

``set_rle_pixel_data(ds, frames)`` puts such frames into a dataset (Bits Allocated 8, Samples per Pixel 1) as RLE
Lossless.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless
from rle.utils import encode_pixel_data


def zero_row(columns: int) -> bytes:
    """PackBits of ``columns`` zero bytes: replicate runs of 128, then the rest (even length: a pair per run)."""
    full, rest = divmod(columns, 128)
    tail = b"" if rest == 0 else (bytes([0, 0]) if rest == 1 else bytes([257 - rest, 0]))
    return bytes([129, 0]) * full + tail


def _stream_length(segment: bytes, n: int) -> int:
    """Bytes of the PackBits ``segment`` that decode to its first ``n`` values (leaves out a padding byte)."""
    i = count = 0
    while count < n:
        h = segment[i]
        if h < 128:  # literal run of h + 1 bytes
            count += h + 1
            i += h + 2
        elif h > 128:  # replicate the next byte 257 - h times
            count += 257 - h
            i += 2
        else:  # 128: no operation
            i += 1
    return i


def encode_frame(frame: np.ndarray) -> bytes:
    """One (rows, columns) uint8 frame as an RLE Lossless frame (header + one segment, even length)."""
    rows, columns = frame.shape
    used = np.flatnonzero(frame.any(axis=1))
    zero = zero_row(columns)
    if used.size == 0:
        body = zero * rows
    else:
        r0, r1 = int(used[0]), int(used[-1]) + 1
        band = np.ascontiguousarray(frame[r0:r1], dtype=np.uint8)
        encoded = encode_pixel_data(band.tobytes(), rows=r1 - r0, columns=columns, samples_per_pixel=1,
                                    bits_allocated=8)
        segment = encoded[64:]  # pylibjpeg-rle's own header: one segment at offset 64
        body = zero * r0 + segment[: _stream_length(segment, (r1 - r0) * columns)] + zero * (rows - r1)
    if len(body) % 2:
        body += b"\x00"
    header = struct.pack("<16I", 1, 64, *([0] * 14))
    return header + body


def set_rle_pixel_data(ds: Dataset, frames: Iterable[np.ndarray]) -> None:
    """Replace the pixel data of ``ds`` (Bits Allocated 8, Samples per Pixel 1) by ``frames`` ((rows, columns)
    uint8 each, in the dataset's frame order) encoded RLE Lossless; sets the transfer syntax."""
    if int(ds.BitsAllocated) != 8 or int(ds.get("SamplesPerPixel", 1)) != 1:
        raise ValueError("RLE frames here are 8-bit single-sample only")
    encoded = [encode_frame(np.asarray(f, dtype=np.uint8)) for f in frames]
    if len(encoded) != int(ds.get("NumberOfFrames", 1)):
        raise ValueError(f"{len(encoded)} frames for a dataset of {ds.get('NumberOfFrames', 1)}")
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = RLELossless
