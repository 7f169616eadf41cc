"""Real, minimal media bytes: a baseline JPEG of any size and a silent MP3, built without Pillow.

The fake Pollinations server answers with these so that everything downstream (base64 in the
response, ``Content-Type``, ``?format=image``) handles genuine files, and tests can check them
structurally (:func:`jpeg_size`, :func:`mp3_frames`) without an imaging library.
"""

from __future__ import annotations

import struct

_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg(width: int, height: int, comment: str = "") -> bytes:
    """A valid baseline JPEG of ``width`` x ``height`` mid-grey pixels.

    Every 8x8 block of a flat mid-grey image has all-zero coefficients, so the entropy-coded
    data is two one-bit Huffman codes per block (DC difference 0, end of block). ``comment``
    goes in a COM segment, which decoders ignore; the fake uses it to say what it was asked.
    """
    if not (1 <= width <= 65535 and 1 <= height <= 65535):
        raise ValueError(f"JPEG dimensions out of range: {width}x{height}")
    quant = _segment(0xDB, b"\x00" + b"\x01" * 64)
    frame = _segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    # One code of length 1 per table: DC category 0 and AC end-of-block, both coded "0".
    one_code = b"\x01" + b"\x00" * 15 + b"\x00"
    huffman = _segment(0xC4, b"\x00" + one_code) + _segment(0xC4, b"\x10" + one_code)
    scan_header = _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    blocks = -(-width // 8) * -(-height // 8)
    bits = 2 * blocks
    data = bytearray(bits // 8)
    if bits % 8:
        data.append(0xFF >> (bits % 8))  # pad the last byte with 1-bits, as the standard asks
    com = _segment(0xFE, comment.encode("utf-8")[:60000]) if comment else b""
    return _SOI + com + quant + frame + huffman + scan_header + bytes(data) + _EOI


def jpeg_size(data: bytes) -> tuple[int, int]:
    """The ``(width, height)`` a JPEG declares; ``ValueError`` if it is not a JPEG."""
    if not (data.startswith(_SOI) and data.endswith(_EOI)):
        raise ValueError("not a JPEG: missing start or end of image marker")
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise ValueError(f"not a JPEG: no marker at byte {position}")
        marker = data[position + 1]
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        if marker == 0xC0:
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        position += 2 + length
    raise ValueError("not a JPEG: no frame header")


def jpeg_comment(data: bytes) -> str:
    """The text of a JPEG's first COM segment ("" if none)."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        if marker == 0xFE:
            return data[position + 4 : position + 2 + length].decode("utf-8", "replace")
        if marker == 0xDA:
            break
        position += 2 + length
    return ""


# MPEG-1 Layer III, no CRC, 128 kbit/s, 44.1 kHz, no padding, mono: 417-byte frames.
_MP3_HEADER = b"\xff\xfb\x90\xc4"
_MP3_FRAME_BYTES = 144 * 128_000 // 44_100
_MP3_SAMPLES_PER_FRAME = 1152


def mp3(seconds: float) -> bytes:
    """A valid MP3 of ``seconds`` of silence (frames whose side information codes nothing)."""
    frames = max(1, round(seconds * 44_100 / _MP3_SAMPLES_PER_FRAME))
    frame = _MP3_HEADER + b"\x00" * (_MP3_FRAME_BYTES - len(_MP3_HEADER))
    return frame * frames


def mp3_frames(data: bytes) -> int:
    """How many MPEG audio frames ``data`` holds, walking frame headers; ``ValueError`` if the
    bytes are not a sequence of MP3 frames."""
    bitrates = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]
    rates = [44_100, 48_000, 32_000]
    position = frames = 0
    while position < len(data):
        header = data[position : position + 4]
        if len(header) < 4 or header[0] != 0xFF or (header[1] & 0xFE) != 0xFA:
            raise ValueError(f"not an MPEG-1 Layer III frame at byte {position}")
        bitrate = bitrates[header[2] >> 4] * 1000
        rate = rates[(header[2] >> 2) & 0x03]
        padding = (header[2] >> 1) & 0x01
        if not bitrate:
            raise ValueError(f"free or bad bitrate in the frame at byte {position}")
        position += 144 * bitrate // rate + padding
        frames += 1
    if position != len(data):
        raise ValueError("the last MP3 frame is truncated")
    return frames
