import numpy as np
import pytest

from dfpipe.core.errors import PipelineError
from dfpipe.extract import faces as facelib
from dfpipe.extract.faces import Face, crop_face, detect_downscaled, select_faces, square_box


def test_square_box_has_margin_and_is_centred():
    box = (100.0, 100.0, 200.0, 180.0)  # face 100 wide, 80 high -> size 100
    x1, y1, x2, y2 = square_box(box, 1.3, 1000, 1000)
    assert x2 - x1 == y2 - y1 == 130
    assert (x1 + x2) / 2 == pytest.approx(150, abs=1)
    assert (y1 + y2) / 2 == pytest.approx(140, abs=1)


def test_square_box_shifted_inside_not_squashed():
    x1, y1, x2, y2 = square_box((0.0, 0.0, 50.0, 50.0), 1.3, 200, 100)
    assert (x1, y1) == (0, 0) and x2 - x1 == y2 - y1 == 65
    x1, y1, x2, y2 = square_box((150.0, 20.0, 200.0, 100.0), 2.0, 200, 100)
    assert x2 - x1 == y2 - y1 == 100 and x2 == 200 and y1 == 0


def test_crop_face_size_and_content():
    frame = np.zeros((400, 600, 3), np.uint8)
    frame[150:250, 250:350] = 255  # the "face": a white 100x100 square
    crop = crop_face(frame, (250.0, 150.0, 350.0, 250.0), margin=2.0, size=64)
    assert crop.shape == (64, 64, 3)
    # margin 2.0 -> the face fills the middle half of the crop, black around it
    assert crop[32, 32].min() > 200 and crop[2, 2].max() < 30
    white = (crop[..., 0] > 127).mean()
    assert white == pytest.approx(0.25, abs=0.03)


def test_select_faces():
    small = Face((0, 0, 10, 10), 0.99)
    big = Face((0, 0, 50, 40), 0.95)
    assert select_faces([small, big], "largest") == [big]
    assert select_faces([small, big], "all") == [big, small]


class _CentreDetector(facelib.Detector):
    """Reports one face in the middle quarter of whatever frame it is given."""

    def __init__(self):
        self.seen = []

    def detect(self, frames):
        self.seen.extend(f.shape for f in frames)
        return [[Face((f.shape[1] / 4, f.shape[0] / 4, 3 * f.shape[1] / 4,
                       3 * f.shape[0] / 4), 0.99)] for f in frames]


def test_detection_on_downscaled_copy_maps_back():
    det = _CentreDetector()
    frame = np.zeros((1080, 1920, 3), np.uint8)
    (faces,) = detect_downscaled(det, [frame], max_side=640)
    assert det.seen == [(360, 640, 3)]
    assert faces[0].box == pytest.approx((480, 270, 1440, 810))


def test_unknown_detector():
    with pytest.raises(PipelineError, match="unknown detector"):
        facelib.build_detector("haar")


def test_mtcnn_finds_a_real_face():
    from dfpipe.sample.camera import face_photos

    name, photo = face_photos()[0]
    det = facelib.build_detector("mtcnn")
    (faces,) = detect_downscaled(det, [photo], max_side=640)
    assert faces, f"no face found in {name}"
    assert all(f.confidence >= 0.9 for f in faces)
    best = select_faces(faces)[0]
    assert best.size > 40


def test_retinaface_missing_weights_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path))
    with pytest.raises(PipelineError) as err:
        facelib.preflight("retinaface")
    msg = str(err.value)
    assert str(tmp_path / ".deepface" / "weights" / "retinaface.h5") in msg
    assert "--detector mtcnn" in msg and "\n" not in msg


def test_a_frame_whose_small_copy_shows_no_face_is_searched_again_at_full_size():
    import numpy as np

    from dfpipe.extract.faces import Detector, Face, detect_downscaled

    class NeedsPixels(Detector):
        """Finds a 'face' only in frames at least 500 px wide (a small face needs pixels)."""

        def __init__(self) -> None:
            self.calls: list[list[int]] = []

        def detect(self, frames):
            self.calls.append([f.shape[1] for f in frames])
            return [[Face((10.0, 10.0, 60.0, 60.0), 0.99, None)] if f.shape[1] >= 500 else []
                    for f in frames]

    frames = [np.zeros((720, 1280, 3), np.uint8), np.zeros((200, 300, 3), np.uint8)]
    detector = NeedsPixels()
    found = detect_downscaled(detector, frames, 320)
    assert detector.calls == [[320, 300], [1280]]  # only the downscaled frame is retried
    assert [len(f) for f in found] == [1, 0]
    assert found[0][0].box == (10.0, 10.0, 60.0, 60.0)  # the full-size detection, not scaled
    detector.calls.clear()
    assert [len(f) for f in detect_downscaled(detector, frames, 320, retry_full=False)] == [0, 0]
    assert detector.calls == [[320, 300]]
