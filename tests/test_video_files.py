"""One answer to "is this file a video?" for prepare, training on video files and classify."""
from pathlib import Path

import numpy as np

import resnet3d
from resnet3d.commands.classify import find_videos as classify_inputs
from resnet3d.prepare.videos import find_videos as prepare_inputs
from resnet3d.synthetic import write_mp4
from resnet3d.video_files import VIDEO_EXTENSIONS, is_video_file


def _folder_of_videos(root: Path) -> Path:
    frames = np.full((4, 32, 32, 3), 90, dtype=np.uint8)
    write_mp4(root / "waving" / "a.mp4", frames)
    write_mp4(root / "waving" / "B.MP4", frames)
    # what copying from a Mac leaves beside each video: AppleDouble metadata, not a video
    (root / "waving" / "._a.mp4").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    (root / "waving" / "notes.txt").write_text("not a video")
    return root


def test_is_video_file():
    assert is_video_file("clip.mp4") and is_video_file(Path("x/CLIP.AVI")) and is_video_file("a.b.webm")
    assert not is_video_file("._clip.mp4") and not is_video_file(".hidden.mkv")
    assert not is_video_file("clip.jpg") and not is_video_file("mp4") and not is_video_file("x/clip")


def test_prepare_and_classify_find_the_same_videos(tmp_path):
    root = _folder_of_videos(tmp_path / "videos")
    prepared = sorted(job.video.name for job in prepare_inputs(root, "kinetics").jobs)
    classified = sorted(Path(path).name for path, _, _ in classify_inputs([str(root)], "", ""))
    assert prepared == classified == ["B.MP4", "a.mp4"]


def test_one_list_of_video_extensions():
    package = Path(resnet3d.__file__).parent
    defining = sorted(path.relative_to(package).as_posix() for path in package.rglob("*.py")
                      if "VIDEO_EXTENSIONS = (" in path.read_text(encoding="utf-8"))
    assert defining == ["video_files.py"]
    assert ".mp4" in VIDEO_EXTENSIONS and all(ext == ext.lower() for ext in VIDEO_EXTENSIONS)
