"""A GPU out of memory during training: one line with the batch and the fix, the epoch's steps
kept. torch's own error type is raised here on the CPU where the step would have raised it."""
import torch

from engine_helpers import TINY, data_args
from resnet3d.cli import main
from resnet3d.engine.gpu_memory import out_of_memory_line, torch_summary

# torch 2.x's text, as a CUDA allocator prints it
TORCH_TEXT = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB of which "
              "10.00 MiB is free. Including non-PyTorch memory, this process has 79.08 GiB memory in use. Of the "
              "allocated memory 77.50 GiB is allocated by PyTorch, and 1.02 GiB is reserved by PyTorch but "
              "unallocated. If reserved but unallocated memory is large try setting "
              "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.")
SUMMARY = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB of which 10.00 MiB is free"


def test_the_line_keeps_torchs_first_three_sentences():
    assert torch_summary(torch.cuda.OutOfMemoryError(TORCH_TEXT)) == SUMMARY
    line = out_of_memory_line(torch.cuda.OutOfMemoryError(TORCH_TEXT), "at batches of 8 clips", "lower --batch_size")
    assert line.startswith(f"the GPU ran out of memory at batches of 8 clips ({SUMMARY}): lower --batch_size; if another")
    assert out_of_memory_line(RuntimeError(TORCH_TEXT), "x", "y") is None  # torch's type, not the words


def _failing_step(monkeypatch, at):
    """The training step raises torch's out of memory at its ``at``-th call."""
    from resnet3d.engine import loop

    calls = [0]
    step = loop.train_step

    def failing(*args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            raise torch.cuda.OutOfMemoryError(TORCH_TEXT)
        return step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", failing)


def _main(motion_data, tmp_path, *extra):
    return main(["main", *data_args(motion_data), "--result_path", str(tmp_path / "run"), "--n_epochs", "1",
                 "--no_cuda", "--batch_size", "4", "--no_val", *TINY, *extra])


def test_out_of_memory_mid_epoch_keeps_the_steps_and_names_the_batch(motion_data, tmp_path, monkeypatch, capsys):
    """It came as torch's traceback and lost the epoch's steps; now the steps taken are saved as
    an interrupted epoch, which --resume auto continues."""
    _failing_step(monkeypatch, 4)
    assert _main(motion_data, tmp_path) == 1
    err = capsys.readouterr().err
    assert ("resnet3d: error: at epoch 1, step 3 of 15: the GPU ran out of memory at batches of 4 clips of 8x32x32 "
            f"({SUMMARY}): lower --batch_size, or train in bf16") in err, err
    assert f"saved {tmp_path / 'run' / 'model_interrupted.pth'}. Continue with --resume auto." in err
    assert "Traceback" not in err
    monkeypatch.undo()
    assert _main(motion_data, tmp_path, "--resume", "auto") == 0
    assert "model_interrupted.pth (resnet-10, 0 epoch(s) done, step 3 of the next)" in capsys.readouterr().out


def test_out_of_memory_at_the_first_step(motion_data, tmp_path, monkeypatch, capsys):
    _failing_step(monkeypatch, 1)
    assert _main(motion_data, tmp_path) == 1
    err = capsys.readouterr().err
    assert "step 0 of 15: the GPU ran out of memory at batches of 4 clips" in err
    assert "no checkpoint was written yet" in err and "Traceback" not in err


def test_out_of_memory_in_validation_keeps_the_epochs_training(motion_data, tmp_path, monkeypatch, capsys):
    from resnet3d.engine import epochs

    def failing(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError(TORCH_TEXT)

    monkeypatch.setattr(epochs, "validate", failing)
    result = tmp_path / "run"
    assert main(["main", *data_args(motion_data), "--result_path", str(result), "--n_epochs", "1", "--no_cuda",
                 "--batch_size", "4", "--max-steps-per-epoch", "2", *TINY]) == 2
    err = capsys.readouterr().err
    assert (f"the GPU ran out of memory at batches of 4 clips of 8x32x32 ({SUMMARY}): lower --batch_size") in err, err
    assert (f"in the validation after epoch 1: its training is saved in {result / 'model_1.pth'}. Make the batch "
            "fit (above), then continue with --resume auto") in err
    assert (result / "model_1.pth").exists() and "Traceback" not in err
