"""Which files are pictures, and big or odd ones (review EP 4, 5, 7, 8c): an animated picture, a HEIC photo, an
empty file, a photo over PIL's size limits and a link to the folder itself each get one line naming the file and
the way forward, the same through every loader (personalize's and train's, eval's, the page's)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from PIL import Image, features
from ui_requests import png_header  # tests/sd, on the path as pytest puts it

from lowdim.errors import LowdimError
from lowdim_sd.eval.image_files import read_image
from lowdim_sd.images import collect_images, load_image, open_rgb
from lowdim_sd.ui.photos import check_photo

SIZE = 32
# The first bytes of an iPhone photo: an ISO base media 'ftyp' box naming the HEIC brand (then 'mif1', 'heic').
HEIC_HEAD = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 100
HEIC_LINE = "is a HEIC photo, which this install cannot read: convert it to JPEG or PNG"


def _caught(action):
    """What ``action()`` returns and the warnings it gives, every one kept (none folded as repeats)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = action()
    return result, [str(w.message) for w in caught], [w.category for w in caught]


def _animated(path: Path) -> Path:
    """A blank first frame, then a gray one: the fade-in that trains a black square when read silently."""
    frames = [Image.new("RGB", (48, 48), (0, 0, 0)), Image.new("RGB", (48, 48), (128, 128, 128))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def _error(action) -> str:
    with pytest.raises(LowdimError) as caught:
        action()
    line = str(caught.value)
    assert "\n" not in line
    return line


# EP 4: an animated picture -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["anim.gif", "anim.webp", "anim.png"])
def test_an_animated_picture_is_said_once_naming_the_file_and_its_frames(tmp_path, name):
    photo = _animated(tmp_path / name)

    def personalize_reads_it():  # its input check opens the photo, then its loader reads it again
        open_rgb(photo)
        return load_image(photo, SIZE)

    tensor, said, _ = _caught(personalize_reads_it)
    assert tensor.shape == (3, SIZE, SIZE) and float(tensor.max()) == -1.0  # the first frame, as the line says
    assert said == [f"image {photo} is animated (2 frames); using its first frame"]


def test_eval_references_say_an_animated_picture_too(tmp_path):
    photo = _animated(tmp_path / "ref.gif")
    image, said, _ = _caught(lambda: read_image(photo, "reference"))
    assert not isinstance(image, str)
    assert [line for line in said if "animated (2 frames)" in line and str(photo) in line]


def test_the_page_refuses_an_animated_photo_in_one_line(tmp_path):
    photo = _animated(tmp_path / "anim.gif")
    line = _error(lambda: check_photo(photo))
    assert line.startswith("anim.gif is animated (2 frames)") and "still photo" in line


def test_still_pictures_and_a_cameras_two_picture_jpeg_are_said_nothing_of(tmp_path):
    for name in ("still.gif", "still.webp"):
        Image.new("RGB", (48, 48), (10, 200, 30)).save(tmp_path / name)
    camera = tmp_path / "camera.jpg"  # MPO: the photo, then a preview; PIL counts 2 frames, none of them animated
    Image.new("RGB", (48, 48), (200, 0, 0)).save(camera, format="MPO", save_all=True,
                                                 append_images=[Image.new("RGB", (24, 24))])
    with Image.open(camera) as opened:
        assert opened.format == "MPO" and opened.n_frames == 2  # the flavour under test really reaches the loader
    for photo in (tmp_path / "still.gif", tmp_path / "still.webp", camera):
        _, said, _ = _caught(lambda photo=photo: load_image(photo, SIZE))
        assert said == []
    assert check_photo(camera) == camera


# EP 5: HEIC, AVIF, .jfif, .gif, an empty file ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["IMG_0001.HEIC", "renamed.jpg"])  # told by its bytes, whatever its name
def test_a_heic_photo_is_named_as_such_with_a_way_forward_not_called_corrupt(tmp_path, name):
    photo = tmp_path / name
    photo.write_bytes(HEIC_HEAD)
    line = _error(lambda: load_image(photo, SIZE))
    assert line.startswith(f"{photo} {HEIC_LINE}")
    assert "corrupt" not in line and "pillow-heif" not in line  # lowdim would not load its opener: no such advice
    assert _error(lambda: check_photo(photo)).startswith(f"{name} {HEIC_LINE}")


def test_a_folder_of_heic_photos_is_not_said_to_hold_no_pictures(tmp_path):
    for name in ("IMG_0001.HEIC", "IMG_0002.heic"):
        (tmp_path / name).write_bytes(HEIC_HEAD)
    line = _error(lambda: collect_images(tmp_path))
    assert line == (f"folder {tmp_path} holds no image files this install can read: IMG_0001.HEIC, IMG_0002.heic "
                    f"are HEIC photos, which this install cannot read: convert them to JPEG or PNG (an iPhone saves "
                    f"JPEGs with Settings > Camera > Formats > Most Compatible)")


def test_a_heic_beside_pictures_is_skipped_with_its_advice_not_as_a_non_image_file(tmp_path):
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    (tmp_path / "b.heic").write_bytes(HEIC_HEAD)
    (tmp_path / "notes.txt").write_text("not a picture")
    found, said, _ = _caught(lambda: collect_images(tmp_path))
    assert found == [tmp_path / "a.png"]
    assert sorted(said) == [f"skipped 1 non-image file in {tmp_path}: notes.txt",
                            f"skipped 1 photo in {tmp_path}: b.heic {HEIC_LINE} (an iPhone saves JPEGs with "
                            f"Settings > Camera > Formats > Most Compatible)"]


def test_the_folder_scan_takes_what_the_loader_reads_jfif_gif_and_avif(tmp_path):
    names = ["a.jfif", "b.gif"] + (["c.avif"] if features.check("avif") else [])
    Image.new("RGB", (40, 40), (200, 10, 10)).save(tmp_path / "a.jfif", format="JPEG")
    Image.new("RGB", (40, 40), (10, 200, 10)).save(tmp_path / "b.gif")
    if "c.avif" in names:
        Image.new("RGB", (40, 40), (10, 10, 200)).save(tmp_path / "c.avif")
    found, said, _ = _caught(lambda: collect_images(tmp_path))
    assert [path.name for path in found] == names and said == []
    assert all(load_image(path, SIZE).shape == (3, SIZE, SIZE) for path in found)


@pytest.mark.skipif(not features.check("avif"), reason="this PIL reads no AVIF")
def test_a_broken_avif_where_pil_reads_avif_is_not_said_to_be_unreadable_here(tmp_path):
    photo = tmp_path / "broken.avif"
    photo.write_bytes(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 100)
    assert "cannot read" not in _error(lambda: load_image(photo, SIZE))


def test_an_empty_file_is_said_to_be_empty(tmp_path):
    photo = tmp_path / "empty.jpg"
    photo.write_bytes(b"")
    assert _error(lambda: load_image(photo, SIZE)) == f"image file {photo} is empty (0 bytes)"
    assert _error(lambda: check_photo(photo)) == "empty.jpg is empty (0 bytes); drop the photo again"


# EP 7: a photo over PIL's warning and refusal sizes ------------------------------------------------------------------


def test_a_photo_over_pils_warning_size_is_said_once_in_lowdims_words(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # a 1.2 MP photo stands for a 108 MP one
    photo = tmp_path / "big.png"
    Image.new("RGB", (1200, 1000), (90, 120, 150)).save(photo)

    def personalize_reads_it():
        open_rgb(photo)
        return load_image(photo, SIZE)

    _, said, categories = _caught(personalize_reads_it)
    assert Image.DecompressionBombWarning not in categories
    assert said == [f"image {photo} is 1200x1000 pixels (1 MP), more than PIL reads without a warning (1 MP): it "
                    f"loads, slowly; a copy scaled down to 1 MP or less works the same"]


def test_a_photo_over_pils_refusal_size_gets_a_way_forward(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # PIL refuses over twice it: 2.6 MP here
    photo = png_header(tmp_path / "huge.png", 2600, 1000)  # refused from its header: no pixels needed
    assert _error(lambda: load_image(photo, SIZE)) == (f"image {photo} is 3 MP, more pixels than PIL opens safely "
                                                        f"(2 MP): scale it down to 2 MP or less")
    reason = read_image(photo, "reference")  # eval's reason, in the same words
    assert reason == "3 MP, more pixels than PIL opens safely (2 MP): scale it down to 2 MP or less"


@pytest.mark.parametrize(("width", "height"), [(8064, 6048), (8160, 6120)])  # 48 MP and 50 MP phone frames
def test_the_page_takes_the_phone_photos_the_cli_takes(tmp_path, width, height):
    photo = png_header(tmp_path / "phone.png", width, height)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_photo(photo, whole=False) == photo  # the header is all a size check reads


def test_the_page_refuses_a_larger_photo_with_the_same_way_forward(tmp_path):
    photo = png_header(tmp_path / "huge.png", 12000, 9000)
    assert _error(lambda: check_photo(photo, whole=False)) == (
        "huge.png is 12000x9000 pixels (108 MP); photos up to 50 MP are accepted: scale it down to 50 MP or less")


# EP 8c: a link to the folder itself ------------------------------------------------------------------------------


def test_a_link_to_the_folder_itself_is_not_a_sub_folder_to_move_up(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (40, 40)).save(folder / name)
    (folder / "selfdir").symlink_to(".")
    (folder / "up").symlink_to("..")
    found, said, _ = _caught(lambda: collect_images(folder))
    assert found == [folder / "a.png", folder / "b.png"]
    assert said == [f"skipped 2 links in {folder} to the folder itself or a folder above it, not sub-folders of "
                    f"other pictures: selfdir (a link to {folder} itself), up (a link to {tmp_path.resolve()}, above "
                    f"{folder})"]
