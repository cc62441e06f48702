import io

from resnet3d.progress import Progress, format_duration


def test_final_line_printed_once_with_rate_and_eta():
    stream = io.StringIO()
    with Progress(total=3, desc="videos", unit="video", stream=stream, log_every=1000) as bar:
        for _ in range(3):
            bar.update(1, failed=0)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "3/3 (100%)" in lines[0] and "video/s" in lines[0] and "ETA" in lines[0] and "failed=0" in lines[0]


def test_format_duration():
    assert format_duration(59) == "00:59"
    assert format_duration(3723) == "1:02:03"
