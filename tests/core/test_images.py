"""The shared crop reader: RGB order, uint8, and one clear error for a bad file."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from dfpipe.core.errors import PipelineError
from dfpipe.core.images import read_rgb


def test_reads_rgb_not_bgr(tmp_path: Path) -> None:
    bgr = np.zeros((5, 7, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    bgr[0, 0] = (10, 20, 30)
    path = tmp_path / "red.png"
    assert cv2.imwrite(str(path), bgr)
    image = read_rgb(path)
    assert image.dtype == np.uint8 and image.shape == (5, 7, 3)
    assert tuple(image[1, 1]) == (200, 0, 0)
    assert tuple(image[0, 0]) == (30, 20, 10)


@pytest.mark.parametrize("content", [None, b"not a jpeg at all"])
def test_unreadable_file_names_the_file(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "broken.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PipelineError, match="broken.jpg") as err:
        read_rgb(path)
    assert "\n" not in str(err.value)


def test_training_evaluate_and_the_app_feed_the_model_the_same_pixels(tmp_path):
    """A crop of unknown settings (another size than the training feed): one resize rule."""
    import cv2
    import numpy as np

    from dfpipe.core.images import decode_jpeg, to_feed_size
    from dfpipe.scoring.judge import read_images
    from dfpipe.train.inputs import CropLoader

    rng = np.random.default_rng(0)
    crop = cv2.GaussianBlur(rng.integers(0, 256, (90, 90, 3), dtype=np.uint8), (5, 5), 1)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    path = tmp_path / "crop.jpg"
    path.write_bytes(jpeg.tobytes())
    feed = 64
    training = CropLoader(feed, augment=False)(str(path).encode(), 0)
    evaluating = next(read_images([path], 4, feed))
    serving = to_feed_size(decode_jpeg(jpeg.tobytes()), feed)
    assert training.shape == (feed, feed, 3)
    assert np.array_equal(training, evaluating) and np.array_equal(training, serving)
    assert to_feed_size(training, None) is training  # an old model: no feed size, no resize
