"""Decoding on the device: a batch of JPEG bytes -> the batch's uint8 clips, on the GPU.

With ``DataConfig.decode_device = "cuda"`` the loader workers do not decode. Each item picks its
frames, stand-ins and crop box exactly as the CPU path does (``clip.read_encoded_clip``), reads
the frames' bytes and JPEG headers, and hands them over; ``collate_encoded`` packs a batch into a
few flat tensors (cheap to pin and to pass between processes). ``assemble_clips`` then decodes
every JPEG of the batch in one call, ``torchvision.io.decode_jpeg(images, device=...)`` (nvJPEG on
a GPU), crops each frame to its clip's box and resizes the crops on the device (bilinear with
antialiasing, as the CPU path), and returns uint8 ``(N, T, H, W, C)``: the same tensor that
``batch["clip"]`` is in the CPU mode, so ``DeviceTransform`` and the training loop take it as is.

Without torchvision (this module only needs it on the GPU machine), the same steps run with
simplejpeg decoding in the calling process: the mode works and is tested everywhere, but there it
is only a slower CPU path. nvJPEG has no DCT scaling through torchvision, so frames are decoded at
full size whatever ``decode_tolerance`` says.

Bad data never stops a run, as on the CPU path: a frame whose bytes do not decode (found by
decoding the failed call's halves in turn, down to the bad frames) is replaced by the nearest decoded frame of
its clip and counted in ``batch["bad_frames"]``; a clip with no decodable frame takes another clip
of the batch (its target too) and is counted in ``batch["bad_video"]``.

A collated batch in this mode holds, besides "target", "video", "segment", "bad_frames",
"bad_video" (and "flip", "jitter" when training), with U the distinct frames of the batch:

- ``jpeg``: uint8 (bytes,), every frame's JPEG back to back; ``jpeg_offsets``: int64 (U + 1,);
- ``jpeg_sizes``: int64 (U, 2) height and width from each header; ``jpeg_boxes``: int64 (U, 4)
  the clip's crop box in that frame's pixels, x0, y0, x1, y1;
- ``jpeg_clip``: int64 (U,) the clip each frame belongs to; ``jpeg_frames``: int64 (U,) its frame
  number in the video; ``jpeg_on_cpu``: bool (U,) CMYK/YCCK frames, which only the CPU decoders
  turn into RGB; ``jpeg_names``: the frames' files, for messages;
- ``jpeg_positions``: int64 (N, T) which of the U frames each frame of each clip shows;
  ``jpeg_out_hw``: int64 (N, 2) each clip's output height and width.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from resnet3d.data.clip import EncodedClip, UnreadableVideo, report_once
from resnet3d.data.decode import DecodeError, decode_full
from resnet3d.data.loader import new_batch_tensor
from resnet3d.errors import UserError

log = logging.getLogger("resnet3d.data")

ENCODED_KEYS = (
    "jpeg", "jpeg_offsets", "jpeg_sizes", "jpeg_boxes", "jpeg_clip", "jpeg_frames", "jpeg_on_cpu",
    "jpeg_names", "jpeg_positions", "jpeg_out_hw",
)
Device = Union[str, torch.device]
BatchedDecode = Callable[..., List[torch.Tensor]]


# -- worker side -------------------------------------------------------------------------------

def collate_encoded(clips: Sequence[EncodedClip]) -> dict:
    """The ``jpeg*`` entries of a batch (module docstring) from its items' ``EncodedClip``s. In
    a loader worker the bytes go into shared memory, so handing the batch over copies nothing."""
    images = [data for clip in clips for data in clip.images]
    lengths = torch.tensor([len(data) for data in images], dtype=torch.int64)
    offsets = torch.zeros(len(images) + 1, dtype=torch.int64)
    torch.cumsum(lengths, 0, out=offsets[1:])
    flat = new_batch_tensor((int(offsets[-1]),))
    view = memoryview(flat.numpy())
    for data, start, end in zip(images, offsets[:-1].tolist(), offsets[1:].tolist()):
        view[start:end] = data  # one copy (a bytes join first would be two)
    first = np.cumsum([0] + [len(clip.images) for clip in clips[:-1]])
    return {
        "jpeg": flat,
        "jpeg_offsets": offsets,
        "jpeg_sizes": torch.tensor([size for clip in clips for size in clip.sizes], dtype=torch.int64).view(-1, 2),
        "jpeg_boxes": torch.tensor([box for clip in clips for box in clip.boxes], dtype=torch.int64).view(-1, 4),
        "jpeg_clip": torch.tensor([n for n, clip in enumerate(clips) for _ in clip.images], dtype=torch.int64),
        "jpeg_frames": torch.tensor([frame for clip in clips for frame in clip.frames], dtype=torch.int64),
        "jpeg_on_cpu": torch.tensor([flag for clip in clips for flag in clip.on_cpu], dtype=torch.bool),
        "jpeg_names": [name for clip in clips for name in clip.names],
        "jpeg_positions": torch.tensor([[p + int(base) for p in clip.positions] for clip, base in zip(clips, first)],
                                       dtype=torch.int64),
        "jpeg_out_hw": torch.tensor([clip.out_hw for clip in clips], dtype=torch.int64).view(-1, 2),
    }


# -- device side -------------------------------------------------------------------------------

_UNSET = object()
_batched: object = _UNSET  # torchvision's decode_jpeg with mode=RGB, or None; looked up once


def batched_decoder() -> Optional[BatchedDecode]:
    """``images, device -> [uint8 (3, H, W) on device]``: torchvision's ``decode_jpeg`` in RGB
    mode (one batched nvJPEG call on a CUDA device), or None when torchvision does not import
    (absent, or built for another torch)."""
    global _batched
    if _batched is _UNSET:
        try:
            from torchvision.io import ImageReadMode, decode_jpeg
        except Exception as error:  # ImportError, or a torchvision whose operators do not load
            log.debug("torchvision.io does not import (%s): JPEGs are decoded by simplejpeg", error)
            _batched = None
        else:
            def decode(images: List[torch.Tensor], device: Device) -> List[torch.Tensor]:
                return decode_jpeg(images, mode=ImageReadMode.RGB, device=device)

            _batched = decode
    return _batched  # type: ignore[return-value]


def check_decode_device(decode_device: str, device: Device) -> None:
    """Refuse ``decode_device`` "cuda" where it cannot run (one line naming the flag and the
    fix), and say once when torchvision is missing or its decoder does not run on ``device``, so
    decoding falls back to the CPU."""
    global _batched
    if decode_device == "cpu":
        return
    if decode_device not in ("cuda", "mixed"):
        raise UserError(f"--decode-device {decode_device}: use cpu, cuda or mixed")
    flag = f"--decode-device {decode_device}"
    if not torch.cuda.is_available():
        raise UserError(f"{flag} decodes JPEGs on a CUDA GPU, and torch sees none here "
                        "(torch.cuda.is_available() is False): use --decode-device cpu")
    if torch.device(device).type != "cuda":
        raise UserError(f"{flag} decodes on the GPU the model runs on, and it runs on {device}: "
                        "use --decode-device cpu")
    decode = batched_decoder()
    if decode is None:
        log.warning("%s: torchvision does not import, so the JPEGs of each batch are decoded by "
                    "simplejpeg in the main process (a slower CPU path); install the torchvision built for torch %s "
                    "for nvJPEG decoding", flag, torch.__version__)
        return
    problem = _probe(decode, torch.device(device))
    if problem is not None:
        _batched = None  # every batch would fail the batched call, then each frame alone, then decode on the CPU
        log.warning("%s: torchvision's decode_jpeg does not run on %s (%s), so the JPEGs of each "
                    "batch are decoded by simplejpeg in the main process (a slower CPU path); install the "
                    "torchvision built for torch %s, with nvJPEG, for decoding on the GPU", flag, device, problem,
                    torch.__version__)


def _probe(decode: BatchedDecode, device: torch.device) -> Optional[str]:
    """None if ``decode`` turns a small JPEG into its pixels on ``device``, else why not. A
    torchvision whose compiled operators do not load (built for another torch) still imports,
    with only a warning, and one built without nvJPEG raises on every call: without this check
    both would go unnoticed and decode every batch on the CPU, after two failed attempts each."""
    import simplejpeg

    image = np.zeros((16, 16, 3), dtype=np.uint8)
    image[:, 8:] = (200, 40, 90)
    data = torch.frombuffer(bytearray(simplejpeg.encode_jpeg(image, quality=95, colorspace="RGB")), dtype=torch.uint8)
    try:
        out = _decode_apart(decode, [data], device)
    except Exception as error:  # noqa: BLE001 - whatever it is, decoding on the GPU does not work here
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    if len(out) != 1 or tuple(out[0].shape) != (3, 16, 16):
        return f"a 16x16 JPEG came back as {[tuple(o.shape) for o in out]}"
    if int((out[0].cpu().int()[:, 8, 14] - torch.tensor([200, 40, 90])).abs().max()) > 8:  # off the edge
        return "a 16x16 JPEG came back with other colours"
    return None


def clips_to_device(batch: dict, device: Device, non_blocking: bool = True) -> torch.Tensor:
    """The batch's uint8 clips (N, T, H, W, C) on ``device``, whichever mode built the batch:
    decoded there (``assemble_clips``) when it carries JPEG bytes, else copied."""
    if "jpeg" in batch:
        return assemble_clips(batch, device)
    return batch["clip"].to(device, non_blocking=non_blocking)


def assemble_clips(batch: dict, device: Device, decode: Optional[BatchedDecode] = _UNSET,  # type: ignore[assignment]
                   resize: str = "auto") -> torch.Tensor:
    """Decode, crop and resize a batch of ``collate_encoded`` entries: uint8 (N, T, H, W, 3) on
    ``device``. Stand-ins for frames that do not decode are counted into ``batch["bad_frames"]``
    (and a substituted clip into ``batch["bad_video"]``, with the other clip's "target", "video"
    and "segment"), so call this before reading those. Pass the batch as the loader gives it (its
    tensors on the host; pinned is best).

    ``decode``: the batched decoder (``batched_decoder()`` by default; None: the CPU decoders).
    ``resize``: "interpolate" or "matmul" (``_crop_and_resize``); "auto" picks by device."""
    device = torch.device(device)
    if decode is _UNSET:
        decode = batched_decoder()
    offsets = batch["jpeg_offsets"].tolist()
    data = batch["jpeg"] if batch["jpeg"].device.type == "cpu" else batch["jpeg"].cpu()  # decoders read host bytes
    images = list(torch.split(data, np.diff(offsets).tolist()))
    decoded = decode_images(images, batch["jpeg_on_cpu"].tolist(), device, decode)
    positions = batch["jpeg_positions"].clone()
    _stand_in(batch, decoded, positions, device)
    out_sizes = {tuple(size) for size in batch["jpeg_out_hw"].tolist()}
    if len(out_sizes) != 1:
        raise UserError(f"the clips of one batch have different sizes {sorted(out_sizes)} (whole frames of videos of "
                        "different sizes, --inference_crop nocrop): use a batch size of 1, or the centre crop")
    out_hw = out_sizes.pop()
    frames = _crop_and_resize(batch, decoded, sorted(set(positions.view(-1).tolist())), out_hw, device, resize)
    index = host_to_device(positions.view(-1), torch.int64, device)
    return frames.index_select(0, index).view(*positions.shape, *out_hw, 3)


def assemble_clip(clip: EncodedClip, device: Device, **options) -> Tuple[torch.Tensor, int]:
    """One ``EncodedClip`` (e.g. every frame a recognition chunk needs, ``read_encoded_clip``)
    -> uint8 (T, H, W, 3) on ``device`` in ``clip.positions`` order, and how many of its frames
    stood in for frames that did not decode there. Raises ``UnreadableVideo`` when none decodes."""
    batch = collate_encoded([clip])
    batch["bad_frames"] = torch.zeros(1, dtype=torch.int64)
    batch["bad_video"] = torch.zeros(1, dtype=torch.int64)
    try:
        frames = assemble_clips(batch, device, **options)
    except UserError as error:
        raise UnreadableVideo(str(error)) from None
    return frames[0], int(batch["bad_frames"][0])


def decode_images(images: Sequence[torch.Tensor], on_cpu: Sequence[bool], device: torch.device,
                  decode: Optional[BatchedDecode]) -> List[Optional[torch.Tensor]]:
    """Each JPEG as uint8 (3, H, W) on ``device``, or None where no decoder reads it. One batched
    call for all of them; if it fails (one bad frame fails the whole call), the halves are tried
    in turn down to the bad frames, and what the batched decoder refuses then goes to the CPU
    decoders (simplejpeg, else PIL)."""
    out: List[Optional[torch.Tensor]] = [None] * len(images)
    batched = [i for i, cpu in enumerate(on_cpu) if not cpu]
    if decode is not None and batched:
        results = _decode_halving(decode, [images[i] for i in batched], device)
        for i, image in zip(batched, results):
            out[i] = image
    for i, image in enumerate(out):
        if image is None:
            try:
                array = decode_full(images[i].numpy().tobytes())
            except DecodeError:
                continue
            out[i] = host_to_device(np.ascontiguousarray(array.transpose(2, 0, 1)), torch.uint8, device)
    return out


def _decode_halving(decode: BatchedDecode, images: List[torch.Tensor],
                    device: torch.device) -> List[Optional[torch.Tensor]]:
    """``_decode_apart`` on all ``images``; where that fails, on each half in turn, so one bad frame
    in a batch of n costs about 2 log2(n) calls (11 for a thousand frames) instead of n. None for
    the frames the batched decoder refuses on their own."""
    try:
        return list(_decode_apart(decode, images, device))
    except Exception:  # noqa: BLE001 - nvJPEG / libjpeg errors arrive as RuntimeError; find the bad ones
        if len(images) == 1:
            return [None]
        half = len(images) // 2
        return _decode_halving(decode, images[:half], device) + _decode_halving(decode, images[half:], device)


_decode_streams: Dict[int, "torch.cuda.Stream"] = {}


def _decode_apart(decode: BatchedDecode, images: List[torch.Tensor], device: torch.device) -> List[torch.Tensor]:
    """``decode(images, device)``; on CUDA with the outputs allocated on a stream of their own.

    torchvision (0.26 and before) allocates the decoded images on the caller's current stream and
    has nvJPEG write them on a private stream that does not wait for the caller's: the caching
    allocator may hand it a block that kernels still queued on the caller's stream will read
    (a training step's activations, the previous batch's rows), and nvJPEG overwrites it first
    (pytorch/vision pull request 9606). Here the images are allocated on a stream that runs no
    kernel, so its blocks are only ever earlier decoded images, which ``record_stream`` keeps
    from reuse until the caller's stream is done with them. The caller's stream waits for the
    decoding (torchvision's own event, and ``wait_stream``); nothing here makes the host wait
    for the caller's stream (torchvision's call returns once its own stream has decoded)."""
    if device.type != "cuda":
        return decode(images, device=device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    stream = _decode_streams.get(index)
    if stream is None:
        stream = _decode_streams[index] = torch.cuda.Stream(index)
    caller = torch.cuda.current_stream(index)
    with torch.cuda.stream(stream):
        decoded = decode(images, device=device)
    caller.wait_stream(stream)
    for image in decoded:
        image.record_stream(caller)
    return decoded


def host_to_device(values, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``values`` (a list, an array, a host tensor) as a ``dtype`` tensor on ``device``, without
    the host waiting for the device: ``torch.tensor(values, device=cuda)`` copies synchronously,
    which waits for everything queued on the stream (the training step, the recognition batch
    in flight); through pinned memory the copy is queued like any kernel."""
    tensor = torch.as_tensor(values, dtype=dtype)
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def _stand_in(batch: dict, decoded: List[Optional[torch.Tensor]], positions: torch.Tensor, device: torch.device) -> None:
    """Point every frame that did not decode at the nearest decoded frame of its clip (by frame
    number, the earlier one on a tie, as ``clip.read_clip``), counting it; a clip with none left
    takes the next clip of the batch that has frames."""
    bad = [i for i, image in enumerate(decoded) if image is None]
    if not bad:
        return
    names = batch["jpeg_names"]
    for i in bad:
        report_once(names[i], f"{names[i]}: the JPEG does not decode on {device}; the nearest decoded frame of its "
                              "clip stands in")
    owner = batch["jpeg_clip"].tolist()
    frame_of = batch["jpeg_frames"].tolist()
    members: Dict[int, List[int]] = defaultdict(list)
    for i, clip in enumerate(owner):
        members[clip].append(i)
    broken = sorted({owner[i] for i in bad})
    empty = []
    for clip in broken:
        good = [i for i in members[clip] if decoded[i] is not None]
        row = positions[clip].tolist()
        if not good:
            empty.append(clip)
            continue
        replaced = [p if decoded[p] is not None else min(good, key=lambda g: (abs(frame_of[g] - frame_of[p]), frame_of[g]))
                    for p in row]
        batch["bad_frames"][clip] += sum(1 for p in row if decoded[p] is None)
        positions[clip] = torch.tensor(replaced, dtype=positions.dtype)
    n = positions.shape[0]
    whole = [clip for clip in range(n) if clip not in empty]
    if not whole:
        raise UserError(f"no frame of this batch decodes (the first: {names[bad[0]]}); check the JPEG files")
    for clip in empty:
        other = min(whole, key=lambda c: (c - clip) % n)
        positions[clip] = positions[other]
        batch["jpeg_out_hw"][clip] = batch["jpeg_out_hw"][other]
        for key in ("target", "video", "segment"):
            if key in batch and torch.is_tensor(batch[key]):
                batch[key][clip] = batch[key][other]
        batch["bad_video"][clip] = 1
        report_once("unreadable:" + names[members[clip][0]], f"{names[members[clip][0]]}: no frame of this clip decodes "
                    f"on {device}; another clip of the batch is counted in its place")


RESIZE_METHODS = ("auto", "interpolate", "matmul")
MATMUL_CHUNK = 128  # frames per matrix product: bounds the float32 copy of the frames (~118 MB at 320x240)


def _crop_and_resize(batch: dict, decoded: List[Optional[torch.Tensor]], used: List[int], out_hw: Tuple[int, int],
                     device: torch.device, method: str = "auto") -> torch.Tensor:
    """uint8 (U, H, W, 3): row i is frame i's crop resized to ``out_hw`` (rows not in ``used``
    left unset).

    ``interpolate`` (the CPU's default): crops of one size are resized in one ``F.interpolate``
    call, so one call per clip with random crops, one per batch with a fixed box. ``matmul`` (a
    GPU's default): the antialiased bilinear filter written as one (out x in) weight matrix per
    frame and axis, which also does the crop, so frames of one decoded size are cropped and
    resized by two batched matrix products, whatever their boxes: a handful of kernels per batch
    instead of several per clip (docs/data.md, "Decoding on the GPU")."""
    if method == "auto":
        method = "interpolate" if device.type == "cpu" else "matmul"
    if method not in RESIZE_METHODS:
        raise ValueError(f"resize method must be one of {RESIZE_METHODS}")
    boxes = batch["jpeg_boxes"].tolist()
    sizes = batch["jpeg_sizes"].tolist()
    frames = torch.empty((len(decoded), out_hw[0], out_hw[1], 3), dtype=torch.uint8, device=device)
    groups: Dict[Tuple[int, int], List[int]] = defaultdict(list)
    placed: Dict[int, Tuple[int, int, int, int]] = {}
    for i in used:
        image = decoded[i]
        placed[i] = _box_in(boxes[i], sizes[i], image.shape[1], image.shape[2])
        x0, y0, x1, y1 = placed[i]
        groups[(y1 - y0, x1 - x0) if method == "interpolate" else tuple(image.shape[1:])].append(i)
    for members in groups.values():
        step = MATMUL_CHUNK if method == "matmul" else len(members)
        for start in range(0, len(members), step):
            chunk = members[start : start + step]
            if method == "interpolate":  # one crop size: cut, stack, one interpolate call
                crops = torch.stack([decoded[i][:, placed[i][1] : placed[i][3], placed[i][0] : placed[i][2]] for i in chunk])
                resized = resize_crops(crops, out_hw)
            else:  # one frame size: whole frames and their boxes
                boxes_of = host_to_device([placed[i] for i in chunk], torch.float64, device)
                resized = resize_boxes(torch.stack([decoded[i] for i in chunk]), boxes_of, out_hw)
            rows = host_to_device(chunk, torch.int64, device)
            frames.index_copy_(0, rows, resized.permute(0, 2, 3, 1))  # (G, H, W, 3)
    return frames


def filter_matrix(start: torch.Tensor, stop: torch.Tensor, n_in: int, n_out: int) -> torch.Tensor:
    """float32 (G, n_out, n_in): row o of matrix g weighs the input pixels of output pixel o when
    pixels ``start[g]..stop[g]`` (exclusive) of an axis of ``n_in`` are resized to ``n_out``.

    The filter of torch's (and PIL's) antialiased bilinear resize: a triangle centred on the
    output pixel's centre mapped into the input, ``scale`` = in/out wide when shrinking (1 when
    enlarging), its weights normalised to sum 1 over the input pixels inside the crop."""
    size = (stop - start).to(torch.float64)  # (G,)
    scale = (size / n_out)[:, None, None]  # (G, 1, 1)
    center = scale * (torch.arange(n_out, dtype=torch.float64, device=start.device)[None, :, None] + 0.5)
    inside = torch.arange(n_in, dtype=torch.float64, device=start.device)[None, None, :] - start.to(torch.float64)[:, None, None]
    inv = torch.where(scale >= 1, 1 / scale, torch.ones_like(scale))
    weight = (1 - ((inside - center + 0.5) * inv).abs()).clamp_(min=0)
    weight = weight * ((inside >= 0) & (inside < size[:, None, None]))
    return (weight / weight.sum(dim=2, keepdim=True)).to(torch.float32)


def resize_boxes(images: torch.Tensor, boxes: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """uint8 (G, C, H, W) frames and their crop boxes (G, 4: x0, y0, x1, y1) -> uint8 (G, C,
    out_h, out_w): each box cut out and resized with the antialiased bilinear filter, as
    ``resize_crops`` does, by two batched matrix products (rows, then columns). Equal to
    ``resize_crops`` but for float rounding (a pixel at .5 may round the other way; with TF32
    matrix products allowed, errors stay under ~0.3 grey levels before rounding)."""
    height, width = images.shape[-2:]
    rows = filter_matrix(boxes[:, 1], boxes[:, 3], height, size[0])  # (G, out_h, H)
    cols = filter_matrix(boxes[:, 0], boxes[:, 2], width, size[1])  # (G, out_w, W)
    x = torch.matmul(rows[:, None], images.float())  # (G, C, out_h, W)
    x = torch.matmul(x, cols[:, None].transpose(-1, -2))  # (G, C, out_h, out_w)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def _box_in(box: Sequence[int], size: Sequence[int], height: int, width: int) -> Tuple[int, int, int, int]:
    """The box (x0, y0, x1, y1) given in a ``size`` (height, width) frame, on the decoded image;
    the same box unless a decoder returned another size than the header said (then scaled)."""
    if (height, width) == tuple(size):
        return tuple(box)  # type: ignore[return-value]
    sy, sx = height / size[0], width / size[1]
    x0, y0 = int(box[0] * sx), int(box[1] * sy)
    return x0, y0, max(x0 + 1, min(width, round(box[2] * sx))), max(y0 + 1, min(height, round(box[3] * sy)))


def resize_crops(crops: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """uint8 (G, C, h, w) -> uint8 (G, C, H, W), bilinear with antialiasing (PIL's bilinear
    resize, as ``spatial.resize_clip``), computed in float32: torch's CUDA kernel has no uint8
    antialiased path, and the same arithmetic runs on every device. Rounds to nearest."""
    if tuple(crops.shape[-2:]) == tuple(size):
        return crops
    resized = torch.nn.functional.interpolate(crops.float(), size=size, mode="bilinear", antialias=True,
                                              align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)
