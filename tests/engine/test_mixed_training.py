"""`resnet3d main --decode-device mixed` through the trainer, on the CPU: the device side's steps
run there once the GPU check is stood down (on a GPU, tests/gpu/test_gpu_training.py runs it for
real). The trainer must hand each loader's share to its loop, training and validation both."""
import json

import resnet3d.data as data
from resnet3d.cli import main
from resnet3d.data import decode_share

from engine_helpers import TINY, data_args


def test_the_trainer_reports_its_waits_to_both_loaders_shares(motion_data, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "check_decode_device", lambda decode_device, device: None)
    seen = []
    real_observe = decode_share.DecodeShare.observe

    def observe(self, *waits):
        seen.append(id(self))
        return real_observe(self, *waits)

    monkeypatch.setattr(decode_share.DecodeShare, "observe", observe)
    out = tmp_path / "run"
    assert main(["main", *data_args(motion_data), "--result_path", str(out), "--n_epochs", "1", "--no_cuda",
                 *TINY, "--batch_size", "2", "--decode-device", "mixed"]) == 0
    assert json.loads((out / "opts.json").read_text())["data"]["decode_device"] == "mixed"
    assert len(set(seen)) == 2  # the training loader's share and the validation loader's
