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


def test_the_log_interval_comes_from_the_environment(monkeypatch):
    """RESNET3D_PROGRESS_EVERY=0 prints a line per update in a log file (the default is one per 10 s)."""
    monkeypatch.setenv("RESNET3D_PROGRESS_EVERY", "0")
    stream = io.StringIO()
    with Progress(total=5, desc="videos", unit="video", stream=stream) as bar:
        for _ in range(5):
            bar.update(1)
    assert [line.split()[1] for line in stream.getvalue().splitlines()] == ["1/5", "2/5", "3/5", "4/5", "5/5"]


def test_a_bad_log_interval_warns_and_keeps_the_default(monkeypatch):
    import pytest

    from resnet3d.progress import log_interval

    for text in ("soon", "-1", "nan"):
        monkeypatch.setenv("RESNET3D_PROGRESS_EVERY", text)
        with pytest.warns(UserWarning, match="RESNET3D_PROGRESS_EVERY"):
            assert log_interval() == 10.0
    monkeypatch.setenv("RESNET3D_PROGRESS_EVERY", "2.5")
    assert log_interval() == 2.5
