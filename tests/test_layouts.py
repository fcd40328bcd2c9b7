import numpy as np
import pytest

from derain.data import Pair, detect_layout, list_images, list_pairs, load_pair, load_pair_uint8
from derain.errors import DerainError


def _check(root, layout, expected: dict[str, tuple[str, str]]):
    """The detected layout and {name: (rainy file, clean file)}, relative to root."""
    assert detect_layout(root) == layout
    pairs = list_pairs(root)
    found = {p.name: (p.rainy.relative_to(root).as_posix(), p.clean.relative_to(root).as_posix()) for p in pairs}
    assert found == expected
    assert [p.name for p in pairs] == sorted(expected)


@pytest.mark.parametrize("rainy_dir, clean_dir", [("input", "target"), ("rainy", "clean"), ("lq", "gt")])
def test_paired_folders(tmp_path, make_image, rainy_dir, clean_dir):
    for name in ("b", "a"):
        make_image(tmp_path / rainy_dir / f"{name}.png")
        make_image(tmp_path / clean_dir / f"{name}.png")
    _check(tmp_path, "paired", {n: (f"{rainy_dir}/{n}.png", f"{clean_dir}/{n}.png") for n in "ab"})


def test_paired_folders_pair_by_stem_across_formats_and_subfolders(tmp_path, make_image):
    make_image(tmp_path / "rainy" / "x.jpg")
    make_image(tmp_path / "clean" / "x.png")
    make_image(tmp_path / "rainy" / "sub" / "y.JPG")
    make_image(tmp_path / "clean" / "sub" / "y.png")
    _check(tmp_path, "paired", {"x": ("rainy/x.jpg", "clean/x.png"), "sub/y": ("rainy/sub/y.JPG", "clean/sub/y.png")})


def test_rain_norain_folders_with_same_names_are_paired_layout(tmp_path, make_image):
    make_image(tmp_path / "rain" / "1.png")
    make_image(tmp_path / "norain" / "1.png")
    _check(tmp_path, "paired", {"1": ("rain/1.png", "norain/1.png")})


def test_jorder_one_folder(tmp_path, make_image):
    for i in ("001", "002"):
        make_image(tmp_path / f"rain-{i}.png")
        make_image(tmp_path / f"norain-{i}.png")
    _check(tmp_path, "jorder", {i: (f"rain-{i}.png", f"norain-{i}.png") for i in ("001", "002")})


def test_jorder_sibling_folders(tmp_path, make_image):
    for i in ("7", "10"):
        make_image(tmp_path / "rain" / f"rain-{i}.png")
        make_image(tmp_path / "norain" / f"norain-{i}.png")
    _check(tmp_path, "jorder", {i: (f"rain/rain-{i}.png", f"norain/norain-{i}.png") for i in ("7", "10")})


def test_ddn_many_rainy_to_one_clean(tmp_path, make_image):
    for image_id in ("1", "2"):
        make_image(tmp_path / "ground_truth" / f"{image_id}.jpg")
        for k in (1, 2, 14):
            make_image(tmp_path / "rainy_image" / f"{image_id}_{k}.jpg")
    expected = {f"{i}_{k}": (f"rainy_image/{i}_{k}.jpg", f"ground_truth/{i}.jpg") for i in "12" for k in (1, 2, 14)}
    _check(tmp_path, "ddn", expected)


def test_ddn_rejects_names_without_index(tmp_path, make_image):
    make_image(tmp_path / "ground_truth" / "1.jpg")
    make_image(tmp_path / "rainy_image" / "1.jpg")
    with pytest.raises(DerainError, match="<id>_<k>"):
        list_pairs(tmp_path)


def test_spa_in_one_folder(tmp_path, make_image):
    for name in ("p1", "p2"):
        make_image(tmp_path / f"{name}_rain.png")
        make_image(tmp_path / f"{name}_gt.png")
    _check(tmp_path, "spa", {n: (f"{n}_rain.png", f"{n}_gt.png") for n in ("p1", "p2")})


def test_spa_in_rain_and_gt_subfolders(tmp_path, make_image):
    make_image(tmp_path / "scene" / "rain" / "p1_rain.png")
    make_image(tmp_path / "scene" / "gt" / "p1_gt.png")
    _check(tmp_path, "spa", {"scene/p1": ("scene/rain/p1_rain.png", "scene/gt/p1_gt.png")})


def test_did_mdn_side_by_side(tmp_path, make_image):
    both = np.zeros((6, 12, 3), np.uint8)
    both[:, :6] = 200  # left: rainy
    both[:, 6:] = 50  # right: clean
    make_image(tmp_path / "1.jpg", array=both)
    make_image(tmp_path / "2.png", array=both)
    assert detect_layout(tmp_path) == "did-mdn"
    pairs = list_pairs(tmp_path)
    assert [p.name for p in pairs] == ["1", "2"] and all(p.side_by_side and p.rainy == p.clean for p in pairs)
    rainy, clean = load_pair_uint8(pairs[1])
    assert rainy.shape == clean.shape == (6, 6, 3)
    assert (rainy == 200).all() and (clean == 50).all()
    rainy_f, clean_f = load_pair(pairs[1])
    assert rainy_f.dtype == np.float32 and np.allclose(rainy_f, 200 / 255)


def test_side_by_side_with_wrong_shape_names_the_file(tmp_path, make_image):
    path = make_image(tmp_path / "odd.png", size=(3, 7))
    with pytest.raises(DerainError, match="twice as wide") as info:
        load_pair_uint8(Pair("odd", path, path, side_by_side=True))
    assert str(path) in str(info.value)


def test_plain_folder_names_every_layout_tried(tmp_path, make_image):
    make_image(tmp_path / "a.png", size=(10, 12))
    make_image(tmp_path / "b.png", size=(10, 12))
    with pytest.raises(DerainError) as info:
        list_pairs(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "\n" not in message
    for layout in ("DDN", "input/target", "rainy/clean", "rain/norain", "lq/gt", "SPA", "JORDER", "DID-MDN"):
        assert layout in message


def test_missing_root(tmp_path):
    with pytest.raises(DerainError, match="folder not found"):
        detect_layout(tmp_path / "nowhere")


def test_rainy_image_without_partner_is_named(tmp_path, make_image):
    make_image(tmp_path / "input" / "a.png")
    make_image(tmp_path / "input" / "lonely.png")
    make_image(tmp_path / "target" / "a.png")
    with pytest.raises(DerainError, match="lonely.png"):
        list_pairs(tmp_path)


def test_two_files_with_one_name_are_refused(tmp_path, make_image):
    make_image(tmp_path / "rainy" / "a.png")
    make_image(tmp_path / "clean" / "a.png")
    make_image(tmp_path / "clean" / "a.jpg")
    with pytest.raises(DerainError, match="both claim"):
        list_pairs(tmp_path)


def test_stray_file_in_jorder_folder_is_refused(tmp_path, make_image):
    make_image(tmp_path / "rain-1.png")
    make_image(tmp_path / "norain-1.png")
    make_image(tmp_path / "readme.png")
    with pytest.raises(DerainError, match="readme.png"):
        list_pairs(tmp_path)


def test_size_mismatch_names_both_files(tmp_path, make_image):
    make_image(tmp_path / "rainy" / "a.png", size=8)
    make_image(tmp_path / "clean" / "a.png", size=9)
    (pair,) = list_pairs(tmp_path)
    with pytest.raises(DerainError, match="differs") as info:
        load_pair_uint8(pair)
    assert str(pair.rainy) in str(info.value) and str(pair.clean) in str(info.value)


def test_list_images_sorted_case_insensitive_and_skips_hidden(tmp_path, make_image):
    for name in ("b.PNG", "a.jpg", "c.JpEg", "sub/d.webp", "sub/e.tif", "f.bmp", "._a.jpg", ".cache/g.png"):
        make_image(tmp_path / name, size=4)
    (tmp_path / "notes.txt").write_text("not an image")
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == ["a.jpg", "b.PNG", "c.JpEg", "f.bmp", "sub/d.webp", "sub/e.tif"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.jpg", "b.PNG", "c.JpEg", "f.bmp"]
