"""`derain run`: batches of mixed good and bad files, formats, metadata, bit depth, alpha, gray; what a
run says (nothing found, skipped outputs, bad options, progress in logs)."""
import json
import os

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageCms, ImageOps
from skimage import data as skdata

import derain
from derain.cli import main
from derain.photo import fit_to_format, read_photo, upright

RNG = np.random.default_rng(0)
PIXELS = (RNG.random((40, 56, 3)) * 255).astype(np.uint8)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def run(tiny_model_dir, *args):
    return main(["run", *map(str, args), "--model", tiny_model_dir, "--device", "cpu"])


@pytest.fixture
def identity_model(tmp_path, tiny_model_dir) -> str:
    """The tiny model with every weight 0: D_dr's residual is 0, so it changes no pixel."""
    from derain.api import load_network
    from derain.hub import save_pretrained

    net = load_network(tiny_model_dir)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    return str(save_pretrained(net, tmp_path / "identity"))


def exif(**tags):
    names = {"orientation": 274, "make": 271}
    data = Image.Exif()
    for name, value in tags.items():
        data[names[name]] = value
    return data


def test_a_folder_of_good_and_bad_files(tmp_path, tiny_model_dir, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for name in ("a.jpg", "b.png", "c.tif", "d.webp", "e.bmp", "sub/f.png"):
        Image.fromarray(PIXELS).save(src / name)
    (src / "empty.jpg").write_bytes(b"")
    (src / "text.jpg").write_text("not a photo")
    jpeg = (src / "a.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    assert run(tiny_model_dir, src, tmp_path / "missing.png", "-r", "-o", tmp_path / "out") == 1
    out, err = capsys.readouterr()
    for name in ("a.jpg", "b.png", "c.tif", "d.webp", "e.bmp", "sub/f.png"):
        with Image.open(tmp_path / "out" / name) as result, Image.open(src / name) as source:
            assert (result.format, result.size, result.mode) == (source.format, source.size, source.mode)
    errors = err.strip().splitlines()
    assert len(errors) == 4 and all(line.startswith("derain: error: ") for line in errors)
    for name, problem in [("empty.jpg", "empty file"), ("text.jpg", "not an image"),
                          ("truncated.jpg", "cannot decode"), ("missing.png", "not found")]:
        assert any(name in line and problem in line for line in errors), (name, errors)
    assert out.startswith("done 6, skipped 0, failed 4 in ")


def test_a_photo_of_many_tiles_shows_its_tiles_go_by(tmp_path, tiny_model_dir, capsys, monkeypatch):
    """In a log (stderr not a terminal) with progress lines due at once, the photo's own tile bar reports
    under its name; the Derainer is left without the callback afterwards."""
    from derain import console

    monkeypatch.setattr(console, "LOG_INTERVAL", 0.0)
    Image.fromarray(np.tile(PIXELS, (3, 3, 1))).save(tmp_path / "big.png")  # 120 × 168 px
    assert run(tiny_model_dir, tmp_path / "big.png", "--tile", 64, "--overlap", 16, "-o", tmp_path / "out") == 0
    lines = capsys.readouterr().err.splitlines()
    tile_lines = [line for line in lines if line.startswith("big.png:") and "tile" in line]
    assert tile_lines and any("/6 " in line for line in tile_lines), lines  # 2 × 3 tiles of 64 px, the last longer


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path, tiny_model_dir, capsys):
    Image.fromarray(PIXELS).save(tmp_path / "a.png")
    target = tmp_path / "out" / "a.png"
    assert run(tiny_model_dir, tmp_path / "a.png", "-o", tmp_path / "out") == 0
    target.write_bytes(b"old")
    assert run(tiny_model_dir, tmp_path / "a.png", "-o", tmp_path / "out") == 0
    assert target.read_bytes() == b"old"
    assert run(tiny_model_dir, tmp_path / "a.png", "-o", tmp_path / "out", "--overwrite") == 0
    assert Image.open(target).size == (56, 40)
    assert "done 0, skipped 1, failed 0" in capsys.readouterr().out


def test_inputs_are_never_written_over(tmp_path, tiny_model_dir, capsys):
    Image.fromarray(PIXELS).save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    Image.fromarray(PIXELS).save(tmp_path / "sub" / "b.png")
    before = (tmp_path / "a.png").read_bytes()
    assert run(tiny_model_dir, tmp_path / "a.png", tmp_path / "sub" / "b.png", "-o", tmp_path, "--overwrite") == 1
    assert (tmp_path / "a.png").read_bytes() == before and (tmp_path / "b.png").is_file()
    assert "would overwrite an input" in capsys.readouterr().err
    assert run(tiny_model_dir, tmp_path, "-o", tmp_path, "--overwrite") == 2  # a folder into itself
    assert (tmp_path / "a.png").read_bytes() == before
    assert "is the output folder" in capsys.readouterr().err


@pytest.fixture
def no_model_work(monkeypatch):
    """Fail the test if a model is loaded: for checks that must come before any model work."""
    from derain import api

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(api, "load", refuse)


@pytest.mark.parametrize("output, words", [("blocker", "-o {out}: is a file"),
                                           ("blocker/out", "cannot be made: {tmp}/blocker is a file")])
def test_an_output_that_is_not_a_folder_is_refused_before_any_work(tmp_path, tiny_model_dir, capsys, no_model_work,
                                                                   output, words):
    Image.fromarray(PIXELS).save(tmp_path / "a.png")
    Image.fromarray(PIXELS).save(tmp_path / "b.png")
    (tmp_path / "blocker").write_text("a file where the output folder should be")
    out = tmp_path / output
    assert run(tiny_model_dir, tmp_path / "a.png", tmp_path / "b.png", "-o", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words.format(out=out, tmp=tmp_path) in err
    assert (tmp_path / "blocker").read_text() == "a file where the output folder should be"


def test_a_format_derain_cannot_write_fails_before_the_model_is_loaded(tmp_path, tiny_model_dir, capsys,
                                                                      no_model_work):
    Image.fromarray(PIXELS).convert("P").save(tmp_path / "anim.gif")
    assert run(tiny_model_dir, tmp_path / "anim.gif", "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'anim.gif'}: cannot write .gif" in err and "--format png" in err
    assert not (tmp_path / "out" / "anim.gif").exists()


def test_a_gif_in_a_batch_is_one_error_and_format_png_derains_it(tmp_path, tiny_model_dir, capsys):
    Image.fromarray(PIXELS).convert("P").save(tmp_path / "anim.gif")
    Image.fromarray(PIXELS).save(tmp_path / "b.png")
    assert run(tiny_model_dir, tmp_path / "anim.gif", tmp_path / "b.png", "-o", tmp_path / "out") == 1
    out, err = capsys.readouterr()
    assert out.startswith("done 1, skipped 0, failed 1 ") and "anim.gif: cannot write .gif" in err
    assert run(tiny_model_dir, tmp_path / "anim.gif", "-o", tmp_path / "out", "--format", "png") == 0
    with Image.open(tmp_path / "out" / "anim.png") as result:
        assert (result.format, result.size) == ("PNG", (56, 40))


def test_an_unreadable_input_is_reported_and_the_batch_goes_on(tmp_path, tiny_model_dir, capsys, monkeypatch):
    for name in ("locked.png", "fine.png"):
        Image.fromarray(PIXELS).save(tmp_path / name)
    locked = tmp_path / "locked.png"
    if os.geteuid() == 0:  # root reads anything: simulate the refusal where photo.py opens the file
        import builtins

        from derain import photo

        def refuse(path, *args, **kwargs):
            if os.fspath(path) == os.fspath(locked):
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return builtins.open(path, *args, **kwargs)

        monkeypatch.setattr(photo, "open", refuse, raising=False)
    else:
        locked.chmod(0)
    assert run(tiny_model_dir, tmp_path / "locked.png", tmp_path / "fine.png", "-o", tmp_path / "out") == 1
    assert f"{locked}: permission denied" in capsys.readouterr().err
    assert (tmp_path / "out" / "fine.png").is_file()


def test_the_decompression_bomb_limit_is_configurable(tmp_path, tiny_model_dir, capsys):
    Image.fromarray(PIXELS).save(tmp_path / "a.png")  # 2240 pixels
    assert run(tiny_model_dir, tmp_path / "a.png", "-o", tmp_path / "out", "--max-pixels", "2000") == 1
    assert "a.png: image too large" in capsys.readouterr().err
    assert Image.MAX_IMAGE_PIXELS != 2000  # Pillow's limit is restored after the run
    assert run(tiny_model_dir, tmp_path / "a.png", "-o", tmp_path / "out") == 0


def test_globs_keep_paths_relative_to_their_fixed_part(tmp_path, tiny_model_dir, monkeypatch):
    for name in ("photos/x/a.png", "photos/y/b.png", "photos/y/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(PIXELS).save(tmp_path / name, format="PNG")
    monkeypatch.chdir(tmp_path)
    assert run(tiny_model_dir, "photos/*/*", "-o", "out") == 0
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.*"))
    assert written == [".derain-run.json", "x/a.png", "y/b.png"]  # the record of options, and the images


def test_format_option_and_jpeg_quality(tmp_path, tiny_model_dir):
    Image.fromarray(np.dstack([PIXELS, PIXELS[..., :1]])).save(tmp_path / "a.png")
    assert run(tiny_model_dir, tmp_path / "a.png", "-o", tmp_path / "q90", "--format", "jpg", "--quality", "90") == 0
    assert run(tiny_model_dir, tmp_path / "a.png", "-o", tmp_path / "q20", "--format", "jpg", "--quality", "20") == 0
    with Image.open(tmp_path / "q90" / "a.jpg") as img:
        assert (img.format, img.mode) == ("JPEG", "RGB")  # JPEG has no alpha
    assert (tmp_path / "q20" / "a.jpg").stat().st_size < (tmp_path / "q90" / "a.jpg").stat().st_size


@pytest.mark.parametrize("subsampling", [0, 2])
def test_a_jpeg_keeps_its_own_tables_and_subsampling_unless_a_quality_is_given(tmp_path, identity_model, subsampling):
    """Read back by Pillow: without --quality the output has the input's quantization tables and chroma
    subsampling, so an identity model returns its pixels within a level or two; --quality 95 re-encodes."""
    from PIL import JpegImagePlugin

    Image.fromarray(skdata.coffee()[100:260, 150:374]).save(tmp_path / "a.jpg", quality=80, subsampling=subsampling,
                                                             progressive=subsampling == 2)
    assert run(identity_model, tmp_path / "a.jpg", "-o", tmp_path / "kept") == 0
    assert run(identity_model, tmp_path / "a.jpg", "-o", tmp_path / "q95", "--quality", "95") == 0
    with Image.open(tmp_path / "a.jpg") as src, Image.open(tmp_path / "kept" / "a.jpg") as kept, \
            Image.open(tmp_path / "q95" / "a.jpg") as q95:
        assert kept.quantization == src.quantization and q95.quantization != src.quantization
        assert JpegImagePlugin.get_sampling(kept) == JpegImagePlugin.get_sampling(src) == subsampling
        assert bool(kept.info.get("progressive")) == (subsampling == 2)  # progressive stays progressive
        decoded, again, q95_again = (np.asarray(img, dtype=float) for img in (src, kept, q95))
    kept_error, q95_error = np.abs(again - decoded).mean(), np.abs(q95_again - decoded).mean()
    assert kept_error < 0.25 and kept_error < q95_error / 2  # 0.03 / 0.20 levels against 1.32 / 0.60 at quality 95
    assert (tmp_path / "kept" / "a.jpg").stat().st_size < 1.02 * (tmp_path / "a.jpg").stat().st_size


@pytest.mark.parametrize("lossless", [True, False])
def test_a_lossless_webp_stays_lossless_unless_a_quality_is_given(tmp_path, identity_model, lossless):
    """With an identity model a lossless WebP comes back pixel for pixel; a lossy one stays lossy, and
    --quality makes any WebP lossy (the RIFF chunk names the codec: VP8L lossless, VP8 lossy)."""
    from derain.photo import webp_is_lossless

    photo = skdata.coffee()[100:260, 150:374]
    Image.fromarray(photo).save(tmp_path / "a.webp", lossless=lossless, exif=exif(make="TestCam").tobytes())
    assert webp_is_lossless(tmp_path / "a.webp") == lossless
    assert run(identity_model, tmp_path / "a.webp", "-o", tmp_path / "kept") == 0
    assert run(identity_model, tmp_path / "a.webp", "-o", tmp_path / "q90", "--quality", "90") == 0
    assert webp_is_lossless(tmp_path / "kept" / "a.webp") == lossless and not webp_is_lossless(tmp_path / "q90" / "a.webp")
    if lossless:
        assert np.array_equal(np.asarray(Image.open(tmp_path / "kept" / "a.webp")), photo)


@pytest.mark.parametrize("fmt, suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp"), ("AVIF", ".avif"),
                                         ("HEIF", ".heic")])
def test_exif_orientation_is_applied_and_exif_and_icc_are_kept(tmp_path, tiny_model_dir, fmt, suffix):
    from derain.imageio import ensure_codec

    name = "a" + suffix
    ensure_codec(name)  # HEIC: registers pillow-heif with Pillow, which turns the EXIF orientation into the
    # container's rotation (HEIF's own; readers ignore EXIF's there), as phones write it
    Image.fromarray(PIXELS).save(tmp_path / name, format=fmt, exif=exif(orientation=6, make="TestCam").tobytes(),
                                 icc_profile=SRGB)
    assert run(tiny_model_dir, tmp_path / name, "-o", tmp_path / "out") == 0
    with Image.open(tmp_path / "out" / name) as out:
        assert out.size == (40, 56)  # upright: the 56×40 pixels turned a quarter
        assert out.getexif().get(271) == "TestCam" and out.getexif().get(274, 1) == 1
        assert out.info["icc_profile"] == SRGB


def test_tiff_keeps_icc_descriptive_tags_and_compression(tmp_path, tiny_model_dir):
    Image.fromarray(PIXELS).save(tmp_path / "a.tif", icc_profile=SRGB, compression="tiff_lzw",
                                 tiffinfo={271: "TestCam", 33432: "(c) someone"})
    assert run(tiny_model_dir, tmp_path / "a.tif", "-o", tmp_path / "out") == 0
    with Image.open(tmp_path / "out" / "a.tif") as out:
        assert out.info["icc_profile"] == SRGB and out.info["compression"] == "tiff_lzw"
        assert (out.getexif().get(271), out.getexif().get(33432)) == ("TestCam", "(c) someone")


def test_alpha_passes_through_and_gray_stays_gray(tmp_path, tiny_model_dir):
    alpha = (RNG.random((40, 56)) * 255).astype(np.uint8)
    Image.fromarray(np.dstack([PIXELS, alpha])).save(tmp_path / "rgba.png")
    Image.fromarray(PIXELS[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(np.dstack([PIXELS[..., 0], alpha])).save(tmp_path / "gray_alpha.png")
    assert run(tiny_model_dir, tmp_path, "-o", tmp_path / "out") == 0
    with Image.open(tmp_path / "out" / "rgba.png") as out:
        assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], alpha)
    with Image.open(tmp_path / "out" / "gray.png") as out:
        assert out.mode == "L"
    with Image.open(tmp_path / "out" / "gray_alpha.png") as out:
        assert out.mode == "LA" and np.array_equal(np.asarray(out)[..., 1], alpha)


def test_16bit_gray_png_stays_16bit(tmp_path, tiny_model_dir):
    deep = (RNG.random((40, 56)) * 65535).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert run(tiny_model_dir, tmp_path / "deep.png", "-o", tmp_path / "out") == 0
    with Image.open(tmp_path / "out" / "deep.png") as out:
        values = np.asarray(out)
    assert out.mode == "I;16" and values.dtype == np.uint16
    assert np.count_nonzero(values % 257) > values.size // 2  # not 8-bit levels scaled up
    assert np.array_equal(values, derain.load(tiny_model_dir, device="cpu")(deep))


def test_16bit_colour_tiff_stays_16bit_with_icc_and_orientation(tmp_path, tiny_model_dir):
    deep = (RNG.random((40, 56, 3)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "deep.tif", deep, photometric="rgb", iccprofile=SRGB, metadata=None,
                     extratags=[(274, "H", 1, 8, True), (271, "s", 0, "TestCam", True)])
    assert run(tiny_model_dir, tmp_path / "deep.tif", "-o", tmp_path / "out") == 0
    with tifffile.TiffFile(tmp_path / "out" / "deep.tif") as tif:
        page = tif.pages[0]
        values = page.asarray()
        assert page.iccprofile == SRGB and page.tags["Make"].value == "TestCam"
        assert 274 not in page.tags  # the pixels are upright now
    assert values.dtype == np.uint16 and values.shape == (56, 40, 3)  # orientation 8: turned a quarter
    assert np.count_nonzero(values % 257) > values.size // 2
    assert np.array_equal(values, derain.load(tiny_model_dir, device="cpu")(np.rot90(deep)))


def test_float_tiff_stays_float(tmp_path, tiny_model_dir):
    values = RNG.random((40, 56)).astype(np.float32)
    Image.fromarray(values).save(tmp_path / "f.tif")
    assert run(tiny_model_dir, tmp_path / "f.tif", "-o", tmp_path / "out") == 0
    with Image.open(tmp_path / "out" / "f.tif") as out:
        assert out.mode == "F" and out.size == (56, 40)
        np.testing.assert_allclose(np.asarray(out), derain.load(tiny_model_dir, device="cpu")(values), atol=1e-6)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_turns_arrays_like_pillow_exif_transpose(tmp_path, orientation):
    Image.fromarray(PIXELS).save(tmp_path / "a.png", exif=exif(orientation=orientation))
    with Image.open(tmp_path / "a.png") as img:
        assert np.array_equal(upright(np.asarray(img), orientation), np.asarray(ImageOps.exif_transpose(img)))


def test_read_photo_reports_mode_and_depth(tmp_path):
    Image.fromarray(PIXELS).convert("CMYK").save(tmp_path / "cmyk.jpg")
    photo = read_photo(tmp_path / "cmyk.jpg")
    assert photo.mode == "CMYK" and photo.pixels.shape == (40, 56, 3) and photo.pixels.dtype == np.uint8


@pytest.mark.parametrize("mode, channels, dtype, fmt, expected_mode, expected_channels", [
    ("RGBA", 4, np.uint8, "JPEG", "RGB", 3),
    ("LA", 2, np.uint8, "BMP", "RGBA", 4),
    ("LA", 2, np.uint8, "WEBP", "RGBA", 4),
    ("I;16", 1, np.uint16, "JPEG", "L", 1),
    ("RGB;16", 3, np.uint16, "PNG", "RGB", 3),
    ("RGB;16", 3, np.uint16, "TIFF", "RGB;16", 3),
    ("CMYK", 3, np.uint8, "PNG", "RGB", 3),
])
def test_fit_to_format_converts_only_what_the_format_cannot_hold(mode, channels, dtype, fmt, expected_mode,
                                                                  expected_channels):
    pixels = np.full((4, 5, channels) if channels > 1 else (4, 5), 65535 if dtype == np.uint16 else 255, dtype)
    out, out_mode = fit_to_format(pixels, mode, fmt)
    assert out_mode == expected_mode and (out.shape[2] if out.ndim == 3 else 1) == expected_channels
    assert out.max() == 255 or out_mode == mode


# ---------------------------------------------------------------- what a run says, and what it never does

def test_an_output_folder_inside_the_input_tree_is_never_read_as_input(tmp_path, tiny_model_dir, capsys):
    tree, out = tmp_path / "tree", tmp_path / "tree" / "derained"
    for name in ("a.png", "sub/b.png"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(PIXELS).save(tree / name)
    for _ in range(2):
        assert run(tiny_model_dir, tree, "-r", "-o", out) == 0
    assert run(tiny_model_dir, f"{tree}/**/*.png", "-o", out) == 0  # a glob that reaches into the output
    err = capsys.readouterr().err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png", "sub/b.png"]
    assert "would overwrite" not in err and "error" not in err
    assert f"left out 2 image(s) under the output folder {out}" in err


@pytest.mark.parametrize("files, words", [
    ([], "no image files"),
    (["notes.txt"], "no image files"),
    (["sub/a.png", "sub/deeper/b.png"], "no image files directly inside, 2 in sub-folders; add -r"),
])
def test_nothing_to_derain_says_so_and_fails(tmp_path, tiny_model_dir, capsys, files, words):
    src = tmp_path / "src"
    src.mkdir()
    for name in files:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(PIXELS).save(src / name, format="PNG")
    assert run(tiny_model_dir, src, "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err == f"derain: error: {src}: {words}" + err.split(words, 1)[1] and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_an_empty_folder_beside_good_inputs_is_reported(tmp_path, tiny_model_dir, capsys):
    Image.fromarray(PIXELS).save(tmp_path / "a.png")
    (tmp_path / "empty").mkdir()
    assert run(tiny_model_dir, tmp_path / "a.png", tmp_path / "empty", "-o", tmp_path / "out") == 1
    out, err = capsys.readouterr()
    assert f"{tmp_path / 'empty'}: no image files" in err and out.startswith("done 1, skipped 0, failed 1")


def test_strength_is_recorded_and_a_record_from_before_it_counts_as_strength_1(tmp_path, tiny_model_dir, capsys):
    Image.fromarray(PIXELS).save(tmp_path / "a.png")
    out = tmp_path / "out"
    assert run(tiny_model_dir, tmp_path / "a.png", "-o", out) == 0
    record_file = out / ".derain-run.json"
    record = json.loads(record_file.read_text())
    assert record["options"][0]["strength"] == 1.0
    del record["options"][0]["strength"]  # as derain run wrote it before the option existed
    record_file.write_text(json.dumps(record))
    capsys.readouterr()
    assert run(tiny_model_dir, tmp_path / "a.png", "-o", out) == 0
    assert "different options" not in capsys.readouterr().err
    assert run(tiny_model_dir, tmp_path / "a.png", "-o", out, "--strength", "2") == 0
    assert "made with different options (strength)" in capsys.readouterr().err


def test_skipped_outputs_are_named_and_other_options_are_reported(tmp_path, tiny_model_dir, capsys):
    from derain.archs import create_model
    from derain.hub import save_pretrained

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for name in "abcde":
        Image.fromarray(PIXELS).save(src / f"{name}.png")
    assert run(tiny_model_dir, src, "-o", out) == 0
    capsys.readouterr()
    assert run(tiny_model_dir, src, "-o", out) == 0
    err = capsys.readouterr().err
    assert (f"skipped 5 existing output(s): {out / 'a.png'}, {out / 'b.png'}, {out / 'c.png'} and 2 more; "
            "--overwrite replaces them") in err
    assert "different options" not in err

    assert run(tiny_model_dir, src, "-o", out, "--tta") == 0
    assert "warning: 5 skipped output(s) were made with different options (tta)" in capsys.readouterr().err
    assert run(tiny_model_dir, src / "a.png", "-o", out, "--tta", "--overwrite") == 0
    assert run(tiny_model_dir, src, "-o", out, "--tta") == 0
    assert "warning: 4 skipped output(s) were made with different options (tta): " \
           f"{out / 'b.png'}, {out / 'c.png'}, {out / 'd.png'} and 1 more" in capsys.readouterr().err

    torch.manual_seed(1)
    other = save_pretrained(create_model("tiny"), tmp_path / "other")
    assert run(str(other), src / "a.png", "-o", out, "--tta") == 0
    assert "made with different options (model)" in capsys.readouterr().err
    record = json.loads((out / ".derain-run.json").read_text())
    tta = {name: record["options"][index]["tta"] for name, index in record["outputs"].items()}
    assert tta == {"a.png": True, "b.png": False, "c.png": False, "d.png": False, "e.png": False}

    assert run(str(other), src / "a.png", "-o", out, "--tta", "--overwrite") == 0
    config = json.loads((other / "config.json").read_text())  # the same weights behind another threshold
    config["model"]["shrink"] = 0.04
    (other / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert run(str(other), src / "a.png", "-o", out, "--tta") == 0
    assert "made with different options (model config)" in capsys.readouterr().err


@pytest.mark.parametrize("option, words", [
    (["--max-memory", "1KB"], "max memory 1KB is too small for overlap 32"),
    (["--tile", "20"], "tile 20 (rounded down to 16, a multiple of 16 px) is too small for overlap 32"),
    (["--tile", "-1"], "tile must be >= 0, got -1"),
    (["--overlap", "-1"], "overlap must be >= 0, got -1"),
    (["--max-memory", "lots"], "cannot read memory size 'lots'"),
    (["--threads", "0"], "--threads 0: give 1 or more"),
    (["--quality", "0"], "--quality 0: give 1 to 100"),
    (["--strength", "0"], "strength 0.0: give a number above 0"),
    (["--quality", "101"], "--quality 101: give 1 to 100"),
    (["--rain-angle", "120"], "rain angle 120: give degrees from vertical, -90 to 90"),
    (["--rain-angle", "nan"], "rain angle nan: give degrees from vertical, -90 to 90"),
    (["--scale", "0.5"], "scale 0.5: give 'auto' or a factor of 1 or more"),
    (["--scale", "half"], "scale half: give 'auto' or a factor of 1 or more"),
])
def test_bad_options_are_one_error_before_any_image(tmp_path, tiny_model_dir, capsys, monkeypatch, option, words):
    from derain.cli import run as run_module

    for name in "abc":
        Image.fromarray(PIXELS).save(tmp_path / f"{name}.png")
    monkeypatch.setattr(run_module, "derain_file", lambda *args: pytest.fail("an image was derained"))
    assert run(tiny_model_dir, tmp_path, "-o", tmp_path / "out", *option) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
    assert not (tmp_path / "out").exists()


def test_rain_angle_and_scale_are_recorded_and_a_photo_the_model_leaves_alone_is_written_unchanged(tmp_path, identity_model):
    """--rain-angle and --scale turn and enlarge only the model's change, so an identity model writes the input's pixels."""
    src, out = tmp_path / "a.png", tmp_path / "out"
    Image.fromarray(PIXELS).save(src)
    assert run(identity_model, src, "-o", out, "--rain-angle", "55", "--scale", "2") == 0
    assert np.array_equal(np.asarray(Image.open(out / "a.png")), PIXELS)
    record = json.loads((out / ".derain-run.json").read_text())
    assert record["options"][0]["rain_angle"] == 55.0 and record["options"][0]["scale"] == 2.0
    assert run(identity_model, src, "-o", out, "--rain-angle", "auto", "--overwrite") == 0
    assert np.array_equal(np.asarray(Image.open(out / "a.png")), PIXELS)
    assert json.loads((out / ".derain-run.json").read_text())["options"][-1]["rain_angle"] == "auto"


def test_a_rain_angle_that_is_neither_degrees_nor_auto_is_a_usage_error(tmp_path, tiny_model_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(tiny_model_dir, tmp_path, "--rain-angle", "sideways")
    assert exit_info.value.code == 2 and "'sideways': give degrees from vertical or 'auto'" in capsys.readouterr().err


def test_a_budget_that_forces_small_tiles_is_warned_about_once(tmp_path, tiny_model_dir, capsys):
    for name in "ab":
        Image.fromarray(PIXELS).save(tmp_path / f"{name}.png")
    assert run(tiny_model_dir, tmp_path, "-o", tmp_path / "small", "--max-memory", "5MB") == 0
    err = capsys.readouterr().err
    assert err.count("warning") == 1
    assert "warning: max memory 5MB makes 96-px tiles that overlap by 32 px: about 2.2× the work" in err
    assert run(tiny_model_dir, tmp_path, "-o", tmp_path / "large", "--max-memory", "50MB") == 0
    assert run(tiny_model_dir, tmp_path, "-o", tmp_path / "tile", "--tile", "96", "--overlap", "16") == 0
    assert "warning" not in capsys.readouterr().err


def test_a_float_tiff_above_one_is_a_one_line_error(tmp_path, tiny_model_dir, capsys):
    Image.fromarray((RNG.random((40, 56)) * 255).astype(np.float32)).save(tmp_path / "f.tif")
    Image.fromarray(PIXELS).save(tmp_path / "fine.png")
    assert run(tiny_model_dir, tmp_path / "f.tif", tmp_path / "fine.png", "-o", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"derain: error: {tmp_path / 'f.tif'}: float pixels reach 25") and err.count("\n") == 1
    assert "[0, 1]" in err and (tmp_path / "out" / "fine.png").is_file()


def test_threads_default_to_the_free_cores(tmp_path, tiny_model_dir, monkeypatch):
    import torch as torch_module

    from derain import inference

    chosen = []
    monkeypatch.setattr(inference, "default_threads", lambda: 3)
    monkeypatch.setattr(torch_module, "set_num_threads", chosen.append)
    Image.fromarray(PIXELS).save(tmp_path / "a.png")
    assert run(tiny_model_dir, tmp_path / "a.png", "-o", tmp_path / "out") == 0
    assert run(tiny_model_dir, tmp_path / "a.png", "-o", tmp_path / "out2", "--threads", "2") == 0
    assert chosen == [3, 2]


def test_a_training_run_directory_is_a_model(tmp_path, tiny_model_dir):
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "run" / "model")
    (tmp_path / "run" / "config.yaml").write_text("model: tiny\n")
    Image.fromarray(PIXELS).save(tmp_path / "a.png")
    assert main(["run", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "run")]) == 0
    expected = derain.load(tiny_model_dir, device="cpu")(PIXELS)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "a.png")), expected)


def test_progress_in_a_log_is_whole_lines(tmp_path, tiny_model_dir, capsys, monkeypatch):
    from derain import console

    monkeypatch.setattr(console, "LOG_INTERVAL", 0.0)
    for name in "ab":
        Image.fromarray(PIXELS).save(tmp_path / f"{name}.png")
    assert run(tiny_model_dir, tmp_path, "-o", tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "derain: 100%|##########| 2/2" in err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = capsys.readouterr().out
    examples = help_text.split("examples:", 1)[1].strip().splitlines()
    assert len(examples) == 5 and all(line.strip().startswith("derain run ") for line in examples)
    assert " -o " not in examples[0] and "derained/photo.jpg" in examples[0]
    assert "--threads" in examples[2] and "--rain-angle -55" in examples[3] and "--rain-angle 0" in examples[4]
    assert "[default: derained/ in the current directory]" in " ".join(help_text.split())


def test_photos_longer_than_1600_px_are_named_as_derained_smaller(tmp_path, tiny_model_dir, capsys):
    """--scale auto shrinks only photos longer than 1600 px, and the run says which; --scale 1 keeps them whole."""
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((40, 1700, 3)) * 255).astype(np.uint8)).save(tmp_path / "wide.png")
    Image.fromarray((rng.random((40, 1600, 3)) * 255).astype(np.uint8)).save(tmp_path / "fits.png")
    assert run(tiny_model_dir, tmp_path / "wide.png", tmp_path / "fits.png", "-o", tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "1 photo(s) longer than 1600 px were derained at 1600 px" in err and "wide.png" in err
    assert "fits.png" not in err
    assert run(tiny_model_dir, tmp_path / "wide.png", "-o", tmp_path / "full", "--scale", "1") == 0
    assert "longer than 1600 px" not in capsys.readouterr().err


def test_photos_turned_by_auto_rain_angle_are_named_with_their_angle(tmp_path, tiny_model_dir, capsys, monkeypatch):
    """The run ends by naming the photos --rain-angle auto turned (here a stand-in decision turns the bright one),
    so a wrong turn can be undone with --rain-angle 0; upright photos are not named."""
    from derain import inference

    monkeypatch.setattr(inference, "find_rain_angle", lambda forward, cfg, img, upright, **trial:
                        50.0 if float(img.mean()) > 0.5 else None)
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(tmp_path / "bright.png")
    Image.fromarray(np.full((40, 60, 3), 50, np.uint8)).save(tmp_path / "dark.png")
    assert run(tiny_model_dir, tmp_path / "bright.png", tmp_path / "dark.png", "-o", tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "1 photo(s) looked like rain blown off the vertical and were derained turned" in err
    assert "bright.png (+50°)" in err and "dark.png" not in err
    assert run(tiny_model_dir, tmp_path / "bright.png", "-o", tmp_path / "upright", "--rain-angle", "0") == 0
    assert "derained turned" not in capsys.readouterr().err


def test_format_whose_codec_is_missing_fails_before_any_photo(tmp_path, tiny_model_dir, no_pillow_heif, capsys):
    Image.fromarray(PIXELS).save(tmp_path / "a.png")
    assert run(tiny_model_dir, tmp_path / "a.png", "-o", tmp_path / "out", "--format", "heic") == 2
    err = capsys.readouterr().err
    assert "--format heic: HEIC/HEIF photos need the pillow-heif package" in err and not (tmp_path / "out").exists()


def test_without_o_outputs_go_to_derained_in_the_current_folder(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(PIXELS).save("photo.png")
    before = (tmp_path / "photo.png").read_bytes()
    assert main(["run", "photo.png", "--model", tiny_model_dir, "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip().endswith("; outputs in derained")
    with Image.open(tmp_path / "derained" / "photo.png") as result:
        assert result.size == (56, 40)
    assert (tmp_path / "photo.png").read_bytes() == before
    # the current folder as input: its derained/ is never read back as input
    assert main(["run", ".", "-r", "--model", tiny_model_dir, "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert "left out 1 image(s) under the output folder derained" in err
    assert out.startswith("done 0, skipped 1, failed 0") and "outputs in" not in out
