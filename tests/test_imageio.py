import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from derain.errors import DerainError
from derain.imageio import read_image, read_image_uint8, write_image


def png16(path, array: np.ndarray):
    """Write a 16-bit PNG by hand (Pillow cannot write 48-bit RGB): gray H×W or RGB H×W×3 uint16."""
    h, w = array.shape[:2]
    colour_type = 2 if array.ndim == 3 else 0
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in array)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


def test_rgb_png_reads_exactly(tmp_path, make_image):
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = make_image(tmp_path / "a.png", array=array)
    assert np.array_equal(read_image_uint8(path), array)
    img = read_image(path)
    assert img.dtype == np.float32 and img.shape == (5, 7, 3)
    assert np.allclose(img, array / 255.0, atol=1e-7)


@pytest.mark.parametrize("mode", ["L", "P", "1", "LA"])
def test_gray_and_palette_become_rgb(tmp_path, make_image, mode):
    path = make_image(tmp_path / "a.png", size=8, mode=mode)
    img = read_image_uint8(path)
    assert img.shape == (8, 8, 3)
    if mode != "P":
        assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])


def test_alpha_is_dropped_not_composited(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0  # fully transparent red
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = read_image_uint8(tmp_path / "a.png")
    assert img.shape == (4, 4, 3) and (img[..., 0] == 200).all() and (img[..., 1:] == 0).all()


def test_16bit_gray_is_scaled_by_65535(tmp_path):
    values = np.array([[0, 300, 32768, 65535]], np.uint16)
    path = png16(tmp_path / "g16.png", values)
    img = read_image(path)
    assert img.shape == (1, 4, 3)
    assert np.allclose(img[0, :, 1], values[0] / 65535.0, atol=1e-7)
    assert read_image_uint8(path)[0, :, 0].tolist() == [0, 1, 128, 255]


def test_16bit_rgb_is_scaled(tmp_path):
    values = np.array([[[65535, 32896, 771], [0, 1000, 40000]]], np.uint16)
    img = read_image(png16(tmp_path / "c16.png", values))
    assert img.shape == (1, 2, 3)
    assert np.allclose(img, values / 65535.0, atol=1 / 255)


def test_exif_orientation_is_applied(tmp_path):
    array = np.zeros((2, 4, 3), np.uint8)
    array[0, 0] = 255  # the top-left pixel is marked
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    Image.fromarray(array).save(tmp_path / "r.png", exif=exif)
    img = read_image_uint8(tmp_path / "r.png")
    assert img.shape == (4, 2, 3)
    assert img[0, 1].tolist() == [255, 255, 255]  # top-left went to top-right


def _one_line_error(path, match):
    with pytest.raises(DerainError) as info:
        read_image(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message and match in message
    return message


def test_missing_file(tmp_path):
    _one_line_error(tmp_path / "nope.png", "not found")


def test_folder_is_not_a_file(tmp_path):
    _one_line_error(tmp_path, "not a file")


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    _one_line_error(tmp_path / "empty.png", "empty")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.jpg").write_text("hello, not a JPEG")
    _one_line_error(tmp_path / "notes.jpg", "not an image")


def test_truncated_file(tmp_path, make_image):
    path = make_image(tmp_path / "t.png", size=64)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _one_line_error(path, "cannot decode")


def test_decompression_bomb_is_refused(tmp_path, make_image, monkeypatch):
    path = make_image(tmp_path / "big.png", size=64)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    _one_line_error(path, "too large")


def test_write_roundtrip_and_float_rounding(tmp_path):
    array = np.array([[[0.0, 0.5, 1.0], [0.002, 0.998, 1.7]]], np.float32)
    path = write_image(tmp_path / "sub" / "w.png", array)
    assert read_image_uint8(path).tolist() == [[[0, 128, 255], [1, 254, 255]]]


def test_jpeg_quality_is_used(tmp_path, make_scene):
    img = make_scene(64)
    low = write_image(tmp_path / "low.jpg", img, quality=30).stat().st_size
    high = write_image(tmp_path / "high.jpg", img, quality=95).stat().st_size
    assert low < high


def test_write_is_atomic(tmp_path, monkeypatch):
    path = write_image(tmp_path / "keep.png", np.zeros((4, 4, 3), np.uint8))
    before = path.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        with open(fp, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError):
        write_image(path, np.ones((4, 4, 3), np.uint8))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]  # no temporary file left behind


def test_unknown_output_extension(tmp_path):
    with pytest.raises(DerainError, match="unsupported output extension"):
        write_image(tmp_path / "x.gif", np.zeros((2, 2, 3), np.uint8))


@pytest.mark.parametrize("suffix", [".avif", ".heic"])
def test_phone_formats_round_trip_at_their_quality(tmp_path, make_scene, suffix):
    from skimage.metrics import peak_signal_noise_ratio

    img = np.round(make_scene((48, 64)) * 255).astype(np.uint8)
    high = write_image(tmp_path / ("high" + suffix), img, quality=95)
    low = write_image(tmp_path / ("low" + suffix), img, quality=20)
    back = read_image_uint8(high)
    assert back.shape == img.shape
    assert peak_signal_noise_ratio(img, back) > 35  # lossy, but the same picture
    assert peak_signal_noise_ratio(img, read_image_uint8(low)) < peak_signal_noise_ratio(img, back)


def test_heic_without_pillow_heif_says_what_to_install(tmp_path, no_pillow_heif):
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic")  # a HEIC file's opening bytes
    _one_line_error(path, "HEIC/HEIF photos need the pillow-heif package: pip install 'derain[heif]'")
    with pytest.raises(DerainError, match="out.heic: HEIC/HEIF photos need the pillow-heif package"):
        write_image(tmp_path / "out.heic", np.zeros((2, 2, 3), np.uint8))
