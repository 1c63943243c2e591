"""The sparse RLE Lossless frame encoder of the Grad-CAM SEG decodes back bit for bit with both of pydicom's RLE
decoders (its own and pylibjpeg-rle), whatever the width (runs of 128, a last run of 1) and wherever the non-zero
rows lie; it is as small as pylibjpeg-rle's whole-frame encoding within the zero rows' pairs."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.decoders.rle import _rle_decode_frame
from pydicom.uid import ExplicitVRLittleEndian, RLELossless
from rle.utils import decode_frame, encode_pixel_data

from pipelines.dicom_out.rle import encode_frame, set_rle_pixel_data, zero_row


@pytest.mark.parametrize("columns", [1, 2, 3, 127, 128, 129, 256, 257, 1551])
def test_frames_decode_back(columns: int) -> None:
    rng = np.random.default_rng(columns)
    for trial in range(25):
        rows = int(rng.integers(1, 40))
        frame = np.zeros((rows, columns), np.uint8)
        if trial % 5:  # a band of rows with runs and literals; every fifth frame all zero
            r0 = int(rng.integers(0, rows))
            r1 = int(rng.integers(r0, rows)) + 1
            frame[r0:r1] = rng.integers(0, 3, (r1 - r0, columns)) * int(rng.integers(1, 256))
        encoded = encode_frame(frame)
        assert len(encoded) % 2 == 0
        ours = np.frombuffer(_rle_decode_frame(encoded, rows, columns, 1, 8), np.uint8).reshape(rows, columns)
        theirs = np.frombuffer(decode_frame(encoded, rows * columns, 8, "<"), np.uint8).reshape(rows, columns)
        assert np.array_equal(ours, frame)
        assert np.array_equal(theirs, frame)


def test_zero_row_is_packbits_of_zeros() -> None:
    for columns in (1, 2, 128, 300):
        whole = encode_pixel_data(bytes(columns), rows=1, columns=columns, samples_per_pixel=1, bits_allocated=8)
        decoded = decode_frame(whole[:64] + zero_row(columns), columns, 8, "<")
        assert decoded == bytes(columns)


def test_size_close_to_whole_frame_encoding() -> None:
    frame = np.zeros((600, 500), np.uint8)
    frame[200:260, 100:300] = np.random.default_rng(0).integers(0, 256, (60, 200))
    whole = encode_pixel_data(frame.tobytes(), rows=600, columns=500, samples_per_pixel=1, bits_allocated=8)
    assert abs(len(encode_frame(frame)) - len(whole)) <= 2 * 600


def test_dataset_pixel_data_reads_back() -> None:
    frames = np.zeros((3, 40, 50), np.uint8)
    frames[0, 5:9, 10:20] = 200
    frames[2, 30:40, :] = np.arange(50, dtype=np.uint8)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns, ds.NumberOfFrames = 40, 50, 3
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 8, 8, 7, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = frames.tobytes()
    set_rle_pixel_data(ds, frames)
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    assert np.array_equal(ds.pixel_array, frames)
    with pytest.raises(ValueError, match="frames"):
        set_rle_pixel_data(ds, frames[:2])
