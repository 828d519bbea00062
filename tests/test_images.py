import io

import numpy as np
import pytest
from PIL import Image

from edgecls.core.images import BadImage, load_image


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("JPEG", "jpg"), ("BMP", "bmp"), ("GIF", "gif"),
                                     ("WEBP", "webp")])
def test_formats_decode_to_rgb_uint8(tmp_path, fmt, ext):
    path = tmp_path / f"a.{ext}"
    Image.fromarray(np.full((10, 30, 3), 200, np.uint8)).save(path, fmt)
    x = load_image(path, (8, 12), 3)
    assert x.shape == (8, 12, 3) and x.dtype == np.uint8
    assert abs(int(x.mean()) - 200) <= 6


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "I;16", "1"])
def test_colour_modes(tmp_path, mode):
    path = tmp_path / "m.png"
    base = Image.fromarray(np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (16, 1)))
    if mode == "I;16":
        img = Image.fromarray((np.asarray(base, np.uint16) * 257).astype(np.uint16))
        assert img.mode.startswith("I;16")
    else:
        img = base.convert(mode)
    img.save(path)
    x = load_image(path, (16, 16), 3)
    assert x.shape == (16, 16, 3)
    if mode in ("L", "RGBA", "I;16", "LA"):
        # the gradient survives: 16-bit is scaled to 8 bits, not clipped to white
        assert x[0, 0, 0] < 20 and x[0, -1, 0] > 235


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(path)
    assert 120 <= load_image(path, (4, 4), 1).mean() <= 135


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = tmp_path / "rot.jpg"
    img.save(path, "JPEG", exif=exif, quality=95)
    x = load_image(path, (20, 10), 1)  # displayed: 20 high, 10 wide; white on top
    assert x[:8].mean() > 200 and x[-8:].mean() < 50


def test_grayscale_output(tmp_path):
    path = tmp_path / "g.png"
    Image.fromarray(np.full((5, 5, 3), 90, np.uint8)).save(path)
    x = load_image(path, (5, 5), 1)
    assert x.shape == (5, 5, 1) and int(x[0, 0, 0]) == 90


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.touch()
    with pytest.raises(BadImage, match=r"empty\.png: empty file"):
        load_image(path, (8, 8))


def test_non_image_file(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("hello, not a picture")
    with pytest.raises(BadImage, match=r"notes\.jpg: not an image file"):
        load_image(path, (8, 8))


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(BadImage, match=r"cut\.jpg: unreadable image"):
        load_image(path, (8, 8))


def test_unsupported_format(tmp_path):
    path = tmp_path / "a.tiff"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path, "TIFF")
    with pytest.raises(BadImage, match=r"a\.tiff: TIFF images are not supported"):
        load_image(path, (4, 4))


def test_decompression_bomb_is_a_bad_image(tmp_path):
    """A 40,000 x 40,000 1-bit PNG (a few hundred KB on disk): refused by name from its header, no traceback,
    no gigabytes decoded."""
    import resource

    from .conftest import write_png_bomb

    bomb = write_png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 1 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BadImage, match=r"bomb\.png: .*(pixel limit|over the limit)"):
        load_image(bomb, (16, 16), 3)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KB: nothing decoded


def test_pixel_limit_is_stated_and_configurable(tmp_path, monkeypatch):
    from edgecls.core.errors import EdgeclsError
    from edgecls.core.images import MAX_PIXELS, MAX_PIXELS_ENV

    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((100, 80), np.uint8)).save(path)
    assert MAX_PIXELS == 40_000_000 and load_image(path, (8, 8), 1).shape == (8, 8, 1)
    monkeypatch.setenv(MAX_PIXELS_ENV, "7999")
    with pytest.raises(BadImage, match=r"big\.png: 80 x 100 pixels is over the limit of 7,999 pixels"):
        load_image(path, (8, 8), 1)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(EdgeclsError, match=MAX_PIXELS_ENV):
        load_image(path, (8, 8), 1)


@pytest.mark.parametrize("cut", [60, 200])
def test_truncated_image_is_a_bad_image(tmp_path, cut):
    path = tmp_path / "t.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(BadImage, match=r"t\.png: "):
        load_image(path, (8, 8), 3)
