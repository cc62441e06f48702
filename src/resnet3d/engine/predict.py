"""Per-video recognition over a data set subset: the seed's ``--test_video``, the successor's
``--inference`` and ``resnet3d test``, one code path.

``run_recognition(config, model=..., device=...)`` scores every video of ``config.inference.subset``
and writes one results file (formats: ``resnet3d.engine.results``). How it runs:

- DataLoader workers read *chunks* of views (``resnet3d.engine.windows``): uint8 until the
  device, every frame decoded once even where windows overlap; with ``decode_device`` "cuda"
  they read only the frames' JPEG bytes, and the main process decodes, crops and resizes each
  chunk on the GPU (one batched nvJPEG call per chunk, ``windows.assemble_views``), in a thread
  of its own a few chunks ahead (``engine.feed.decode_thread``) while the main thread scores;
- the main process fills each model batch with views of several videos (the originals ran one
  video per batch, so short videos left the GPU mostly idle; on CUDA each chunk, pinned by the
  loader's thread, goes to the device as it arrives and the batches are joined there),
  normalises on the device, runs the model in channels_last_3d (under bf16 autocast on CUDA),
  and keeps one batch in flight while it books the previous one (``resnet3d.engine.scoring``);
  the model that runs is a copy with each BatchNorm folded into the conv before it
  (``resnet3d.models.fold``; ``fold_bn`` off: as it is); on a CPU device the model's threads
  share the cores with the decoding workers by what each side costs (``CpuThreadSplit``);
- each video's score is the mean of the softmax probabilities of its views (the successor's rule;
  the seed averaged log-probabilities, which we do not reproduce: docs/recognition.md);
- finished videos go to the results file, rewritten atomically every ``save_every`` videos;
  ``resume`` skips videos already there (what an earlier run left, and what becomes of it:
  ``resnet3d.engine.recognition_state``); a video that cannot be read gets an entry in
  ``"errors"`` and the run goes on;
- one run per results file: rank 0 holds a lock beside it (``run_lock.ResultsLock``) from before
  it reads what an earlier run left until the run ends, and removes the temporary files of saves
  a killed run left; a second run on the same file is refused at once, naming the first;
- with several processes (``--n_gpus``, torchrun, several machines), each takes every n-th video
  and keeps its share in a hidden file beside the output (what ``resume`` continues after a
  stop); at the end the shares travel to rank 0 over the process group, so the machines need
  no shared file system, and rank 0 writes the one results file
  (``recognition_state.merge_shares``). A start-up step that one process fails (its machine
  lacks the videos, say) ends them all, its error said once, as in training
  (``distributed.on_every_rank``). A process that fails part way through its share (out of
  memory, a dead loader worker) says so at once, keeps what it scored, and waits at the gather
  while the others finish theirs: the results file gets every process's work, and every process
  ends with the error (``recognition_state.failure_of``, ``say_failed_run``).
"""
from __future__ import annotations

import os
import logging
import sys
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

from resnet3d.data.shared_memory import fit_prefetch
from resnet3d.hardware import default_num_workers
from resnet3d.engine import results as resultfiles
from resnet3d.data.decode_share import DecodeShare
from resnet3d.engine.feed import AHEAD, Waits, decode_thread, on_device_of, started_ahead, with_index
from resnet3d.engine.gpu_memory import describe_clips, out_of_memory_error
from resnet3d.engine.model_start import check_clip_fits
from resnet3d.engine.precision import autocast_dtype
from resnet3d.engine.recognition_state import (failure_of, merge_shares, remove_partial_writes, say_failed_run,
                                               start_state)
from resnet3d.engine.run_lock import ResultsLock
from resnet3d.engine.scoring import Scorer, autotune_convolutions, prepare_for_inference, prepare_model
from resnet3d.engine.share_scoring import ShareScoring
from resnet3d.engine.signals import signal_of, stopped_by
from resnet3d.engine.windows import ViewPlan, WindowDataset, assemble_views, group_units
from resnet3d.errors import AlreadySaid, UserError
from resnet3d.progress import Progress
from resnet3d.output_paths import refuse_input_as_output

log = logging.getLogger("resnet3d.predict")


# -- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecognitionOptions:
    """Everything recognition needs besides the data config, the model and the device."""

    flavour: str  # seed | successor: output format, naming and default windows
    subset: str
    plan: ViewPlan
    average: bool = True
    top_k: int = 5
    batch_size: int = 32
    output: Optional[Path] = None  # None: <result_path>/<subset>[_video].json
    resume: Optional[bool] = None  # None: continue only results of the same weights and settings
    overwrite: bool = False
    save_every: int = 100
    num_workers: int = field(default_factory=default_num_workers)
    precision: str = "auto"
    channels_last: bool = True
    decode_device: str = "cpu"  # "cuda": the workers read JPEG bytes, the device decodes them
    fold_bn: bool = True  # run a copy of the model with each BN folded into its conv (models.fold)


def options_from_config(config: Any, *, n_clips: int = 0, n_crops: int = 1, output: Optional[Path] = None,
                        resume: Optional[bool] = None, overwrite: Optional[bool] = None,
                        save_every: int = 100, chunk_rows: int = 64, world_size: int = 1) -> RecognitionOptions:
    """The recognition settings of a run config (``config.inference`` must be set).

    ``n_clips`` > 0 replaces sliding windows with that many evenly spaced windows; ``n_crops`` 3
    takes three crops along each frame's long side (multi-view testing). ``resume`` None continues
    an earlier results file only if the same weights and settings produced it; ``overwrite``
    defaults to the run's ``--overwrite``.
    """
    inference = config.inference
    if inference is None:
        raise ValueError("config.inference is None: nothing asks for recognition")
    if n_crops not in (1, 3):
        raise UserError(f"--crops {n_crops}: use 1 (the centre) or 3 (start, centre and end of the long side)")
    if n_clips < 0:
        raise UserError(f"--clips {n_clips}: use 0 (sliding windows) or a positive number of windows per video")
    if inference.crop not in ("center", "nocrop"):
        raise UserError(f"--inference_crop {inference.crop}: use center or nocrop")
    if n_crops == 3 and inference.crop == "nocrop":
        raise UserError("--crops 3 and nocrop (--crop / --inference_crop nocrop) exclude each other: three crops cut squares, "
                        "nocrop keeps the whole frame")
    data = config.data
    if n_clips:
        scheme = "even"
    else:
        scheme = "seed" if inference.flavour == "seed" else "sliding"
    if inference.stride < 1:
        raise UserError(f"--inference_stride must be >= 1 (got {inference.stride})")
    if inference.top_k < 1:  # (0 or less wrote one label per video)
        raise UserError(f"[inference] top_k (--inference-top-k) must be 1 or more (got {inference.top_k})")
    plan = ViewPlan(sample_duration=data.sample_duration, sample_size=data.sample_size, scheme=scheme,
                    stride=inference.stride, n_clips=max(1, n_clips),
                    crop="three" if n_crops == 3 else inference.crop, chunk_rows=chunk_rows)
    # --inference_batch_size is per process; the training batch it defaults to is global
    batch = inference.batch_size or max(1, config.run.batch_size // max(1, world_size))
    if batch < 1:
        raise UserError(f"--inference_batch_size must be >= 1 (got {batch})")
    run = config.run
    return RecognitionOptions(
        flavour=inference.flavour, subset=inference.subset, plan=plan, average=inference.average,
        top_k=inference.top_k, batch_size=batch, output=Path(output) if output else None,
        resume=resume,
        overwrite=bool(run.overwrite) if overwrite is None else overwrite,
        save_every=save_every, num_workers=data.num_workers, precision=run.precision,
        channels_last=run.channels_last, decode_device=data.decode_device,
        fold_bn=getattr(inference, "fold_bn", True),
    )


def output_path(config: Any, options: RecognitionOptions) -> Path:
    if options.output is not None:
        return options.output
    name = f"{options.subset}_video.json" if options.flavour == "seed" else f"{options.subset}.json"
    return Path(config.run.result_path) / name


# -- the run -----------------------------------------------------------------------------------


def _class_names(given: Optional[Sequence[str]], annotation_names: Sequence[str], n_outputs: int,
                 warn: Callable[..., None] = log.warning) -> List[str]:
    """The names results are filed under, one per output. ``given``: the model's own (its
    checkpoint's, or a labels file, fitted to the outputs by ``predict_model``; ``resnet3d main``:
    the run's classes), else the annotation's labels stand in.

    A count that does not fit is a warning here, not the error ``predict_model`` makes of a labels
    file: the annotation's labels never claimed to be the model's (its outputs beyond the data
    set's classes, trained with the successor's default --n_classes 400, were never a target), the
    scores are right whatever their names, and ``resnet3d main`` recognises after hours of
    training, which an error would throw away. ``warn`` says the warnings (rank 0 says them for
    every process; the others pass one that says nothing)."""
    if given and annotation_names and not set(given) & set(annotation_names):
        warn("the model's classes (%s, ...) and the annotation's labels (%s, ...) share no name: the "
             "results name the model's classes, which the annotation's videos cannot match; check "
             "that the weights were trained on this data set", given[0], annotation_names[0])
    names = list(given) if given else list(annotation_names)
    if not given and len(names) > n_outputs:
        # weights that record no class names, trained on other classes than the annotation lists
        warn("the model has %d outputs but the annotation lists %d labels: the results name its outputs "
             "by the first %d (%s ... %s), which is right only if it was trained on exactly those, in "
             "that order; otherwise give the weights' class names (resnet3d test --labels FILE). A "
             "warning, not an error: the weights record no class names, the annotation's labels stand "
             "in for them, and the scores are right whatever their names",
             n_outputs, len(names), n_outputs, names[0], names[n_outputs - 1])
    if len(names) < n_outputs:
        others = (f"output {len(names)} is named by its index" if len(names) == n_outputs - 1
                  else f"outputs {len(names)}-{n_outputs - 1} are named by their index")
        warn("the model has %d outputs but only %d class names are known (%s); %s. A warning, not an error: "
             "a model trained with more outputs than its data set's classes (the successor's default "
             "--n_classes 400) has outputs that were never a target, and its scores are right whatever their "
             "names", n_outputs, len(names),
             "the run's classes" if given else "the annotation's labels", others)
        names += [str(i) for i in range(len(names), n_outputs)]
    return names[:n_outputs]


def _n_outputs(model: nn.Module) -> int:
    config = getattr(model, "model_config", None) or {}
    if config.get("n_classes"):
        return int(config["n_classes"])
    classifier = getattr(model, getattr(model, "classifier_name", "fc"), None)
    if isinstance(classifier, nn.Linear):
        return classifier.out_features
    raise UserError("cannot tell how many classes the model predicts (no model_config and no linear classifier)")


def _check_model_takes(model: nn.Module, plan: ViewPlan) -> None:
    config = getattr(model, "model_config", None) or {}
    if plan.crop == "nocrop" and config.get("model") == "c3d" and not config.get("global_pooling"):
        raise UserError("--inference_crop nocrop needs a fully convolutional model; C3D without --global_pooling "
                        "takes only square clips of its sample size. Use --inference_crop center")


def recognition_settings(model: nn.Module, options: RecognitionOptions, data: Any) -> Dict[str, Any]:
    """What decides a results file's content: the weights and every setting of the views."""
    plan = options.plan
    # nvJPEG's pixels differ from libjpeg-turbo's by a few grey levels; recorded only when used, so
    # the files of runs that decoded on the CPU (all before decode_device existed) still continue
    decoded_on = {"decode_device": options.decode_device} if options.decode_device != "cpu" else {}
    return {
        **decoded_on,
        "weights": resultfiles.weights_digest(model),
        "flavour": options.flavour, "subset": options.subset, "average": options.average, "top_k": options.top_k,
        "scheme": plan.scheme, "stride": plan.stride, "n_clips": plan.n_clips, "crop": plan.crop,
        "sample_size": plan.sample_size, "sample_duration": plan.sample_duration,
        "sample_t_stride": data.sample_t_stride, "input_norm": data.input_norm.to_dict(),
        "annotation_path": str(data.annotation_path), "video_path": str(data.video_path),
        "file_type": data.file_type, "input_type": data.input_type,
        "decode_tolerance": data.decode_tolerance, "fast_decode": data.fast_decode,
    }


def run_recognition(
    config: Any,
    *,
    model: nn.Module,
    device: torch.device,
    dist: Any = None,
    class_names: Optional[Sequence[str]] = None,
    n_clips: Optional[int] = None,
    n_crops: Optional[int] = None,
    output: Optional[Path] = None,
    resume: Optional[bool] = None,
    overwrite: Optional[bool] = None,
    save_every: int = 100,
    show_progress: bool = True,
    announce: bool = True,
    assemble_device: Optional[torch.device] = None,
    inputs: Sequence[Tuple[str, Optional[str]]] = (),
) -> Optional[Dict[str, Any]]:
    """Recognise every video of ``config.inference.subset``; write the results file.

    ``model`` is the bare model (moved to ``device`` and put in eval mode here; what runs is a copy
    with its BatchNorm layers folded into their convs unless ``inference.fold_bn`` is off, so
    ``model``'s weights stay as they are); ``class_names``
    name its outputs (default: the annotation's labels). ``n_clips``/``n_crops`` choose multi-view
    testing (see ``options_from_config``). ``announce`` prints a closing line
    (and ``show_progress`` a progress line on stderr). With ``config.data.decode_device`` "cuda",
    the chunks' JPEGs are decoded on ``device`` (refused, one line, where that cannot be), or on
    ``assemble_device`` when given (tests and benchmarks: "cpu" runs the same steps on the CPU,
    with simplejpeg standing in for nvJPEG). ``inputs``: (flag, path) of other files the caller read
    (weights, labels), which the results file must not replace. Returns a summary: ``output``,
    ``videos`` (scored now), ``errors``, ``skipped`` (already done), ``seconds``,
    ``model_calls``, ``bad_frames``, ``decode_device``, ``folded_bn`` (BatchNorm layers folded into
    their convs: ``RecognitionOptions.fold_bn``), ``videos_per_s``, and where the time went:
    ``setup_s`` (reading the annotation, folding, moving the model, building the loader),
    ``first_chunk_s`` (the workers' start-up until their first chunk) and ``data_wait_s`` (blocked
    on the workers after that: near 0 when the device or the main process is the bound), and
    ``model_threads`` (the model's intra-op threads: on a CPU device with workers, set from the
    first batches' costs, ``scoring.CpuThreadSplit``). Several processes: None on every process when
    one failed as recognition started (its error is said once: ``distributed.on_every_rank``).
    """
    started = time.monotonic()
    from resnet3d.data import DeviceTransform
    from resnet3d.data.config import canonical_subset
    from resnet3d.data.dataset import resolve_videos
    from resnet3d.engine.subsets import require_videos, warned_already
    from resnet3d.engine.distributed import DistInfo, on_every_rank, open_patient_group
    from resnet3d.engine.messages import data_warnings_per_machine

    dist = dist or DistInfo()
    # rank 0 waits in this group for the slowest rank's share. Opened first, before any step that
    # one process can fail at alone (its machine lacks the data, say): every rank must join it,
    # and rank 0 waited for the one that had failed, up to the group's week-long timeout; joined,
    # a process that ends breaks it, and the others' next collective fails at once
    gather_group = open_patient_group() if dist.distributed else None
    # multi-view settings: the arguments, else the config's (InferenceConfig.n_clips / n_crops)
    n_clips = n_clips if n_clips is not None else config.inference.n_clips
    n_crops = n_crops if n_crops is not None else config.inference.n_crops
    data = config.data

    def check() -> Tuple[RecognitionOptions, Optional[torch.device], Path, List[Any], List[Any], List[str]]:
        """Every check before a file changes; one process can fail one alone (its machine lacks the
        videos, its weights do not fit the clips)."""
        options = options_from_config(config, n_clips=n_clips, n_crops=n_crops, output=output, resume=resume,
                                      overwrite=overwrite, save_every=save_every, world_size=dist.world_size)
        assemble_on = _assemble_device(options.decode_device, device, assemble_device)
        out_path = output_path(config, options)
        resumed = config.run.resume if config.run.resume != "auto" else None
        refuse_input_as_output(out_path, "the results file", [
            ("--annotation_path", data.annotation_path), ("the checkpoint", resumed),
            ("the pretrained weights", config.finetune.pretrained), *inputs])
        # (every process of a machine resolves the same files: their warnings once per machine)
        with warned_already(data, options.subset), data_warnings_per_machine(dist):
            videos, _, annotation = resolve_videos(data, options.subset)
        require_videos(len(videos), data.annotation_path, canonical_subset(options.subset),
                       "choose the subset to recognise: resnet3d test --subset, resnet3d main --inference_subset "
                       "(the seed's --test_subset)")
        names = resultfiles.result_names([v.key for v in videos], options.flavour)
        n_outputs = _n_outputs(model)
        labels = _class_names(class_names, annotation.class_names, n_outputs,
                              warn=log.warning if dist.is_main else (lambda *args: None))
        _check_model_takes(model, options.plan)
        check_clip_fits(model, data.n_channels, options.plan.sample_duration, options.plan.sample_size)
        return options, assemble_on, out_path, videos, group_units(videos, names), labels

    # each start-up step that one process can fail alone ends every process, its error said once:
    # a process that raised it left the others to fail in their next collective, with gloo's traceback
    checked = on_every_rank(check, dist, device)
    if checked is None:
        return None
    options, assemble_on, out_path, videos, units, labels = checked
    # rank 0 holds the results file's lock from before it reads or moves what an earlier run left
    # until the run ends, however it ends: a second run on the same file would replace this one's
    # saves and shares. In a step of its own: a refused rank 0 ends every process
    lock = ResultsLock(out_path)

    def lock_output() -> bool:
        if dist.is_main:
            lock.acquire()
            # (where the file system has no locks, another run's save may be under way)
            removed = remove_partial_writes(out_path) if lock.held else []
            if removed:
                print(f"resnet3d: removed what a killed save left of {out_path}: {', '.join(removed)}",
                      file=sys.stderr, flush=True)
        return True

    try:
        if on_every_rank(lock_output, dist, device) is None:
            return None
        settings = recognition_settings(model, options, data) if dist.is_main else {}  # only rank 0 decides
        order = [unit.video_id for unit in units]
        state = start_state(out_path, options, settings, dist, device, video_ids=set(order), group=gather_group,
                             order=order)
        if state is None:
            return None
        done = set(state["results"])
        pending = [u for u in units if u.video_id not in done]
        mine = pending[dist.rank :: dist.world_size]
        if dist.distributed:  # this process's share, which records the run's weights and settings
            writer = resultfiles.ResultWriter(resultfiles.partial_path(out_path, dist.rank, dist.world_size),
                                              options.flavour, options.save_every, order=order,
                                              extra={"settings": state["stamp"]})
        else:
            writer = resultfiles.ResultWriter(out_path, options.flavour, options.save_every, earlier=state, order=order)

        # the weights digest above is the caller's (unfolded) model's: folding changes no setting that
        # --resume checks, as precision and batch size do not (all three change scores by rounding only)
        model, n_folded = prepare_for_inference(model, device, options.channels_last, options.fold_bn)
        autotune_convolutions(device, fixed_shapes=options.plan.crop != "nocrop")
        transform = DeviceTransform(data.input_norm, train=False, flow=data.input_type == "flow")
        scorer = Scorer(model, transform, device, autocast_dtype(options.precision, device))

        def open_loader() -> Tuple[WindowDataset, Any]:  # (the machine's shared memory and TMPDIR: data.loader)
            dataset = WindowDataset(videos, mine, data, options.plan)
            with data_warnings_per_machine(dist):  # (fitting the machine's shared memory: alike in its processes)
                return dataset, _loader(dataset, options.num_workers, pin_memory=device.type == "cuda")

        opened = on_every_rank(open_loader, dist, device)
        if opened is None:
            return None
        dataset, loader = opened
        progress = Progress(len(mine), desc=f"recognition {options.subset}", unit="videos", stream=sys.stderr,
                            enabled=show_progress and dist.is_main)
        setup_done = time.monotonic()  # the model folded and on its device, the loader built
        share = ShareScoring(mine, labels, options, writer, scorer, device, loader.num_workers, progress, out_path)

        def stopped(interrupt: KeyboardInterrupt) -> KeyboardInterrupt:
            """The interrupt that ends the run: the command's one line says what is saved and how to
            go on, and exits with the signal's status."""
            kept = len(writer.results) + len(writer.errors)  # what writer.save() writes
            how = how_to_continue(options)
            if dist.distributed:  # (each process saves its own share; counting them all would need the others)
                saved = (f"{kept} of the {len(mine)} videos of rank {dist.rank} are saved in the partial files "
                         f"beside {out_path}")
            else:
                saved = f"{kept} of {len(units)} videos are saved in {out_path}"
            return stopped_by(signal_of(interrupt), f"{saved}; {how}")

        # this process's error part way through its share (several processes): said now, and at the
        # gather every process learns of it. Raised, it left the others a gloo traceback at the gather
        failure: Optional[Tuple[str, int]] = None
        try:
            share.run(_decoded_ahead(loader, options.plan, assemble_on, dataset.decode_share))
        except KeyboardInterrupt as interrupt:
            # Ctrl-C or SIGTERM: what was scored is saved below (finally)
            raise stopped(interrupt) from None
        except Exception as error:  # (one process: the error as it is, after the save below)
            share.keep_the_batch_in_flight()
            out_of_memory = _out_of_memory(error, options, dist.distributed)
            if not dist.distributed:
                if out_of_memory is not None:  # (what was scored is saved below)
                    raise out_of_memory from None
                raise
            failure = failure_of(out_of_memory or error, dist.rank)
        finally:
            # whatever happened, what was scored stays on disk for --resume
            share.threads.restore()
            writer.save()
            progress.close()
        if share.incomplete and failure is None:  # every view was scored, so every video must be complete
            raise RuntimeError(f"recognition ended with {share.incomplete} incomplete videos")
        counts = share.counts

        if dist.distributed:
            # this process's share, saved above, stays on disk until the results file holds it;
            # the closing line and the summary speak of the whole run, not of rank 0's share
            try:
                merged = merge_shares(out_path, options, state, writer, counts, order, gather_group, dist.is_main,
                                      failure=failure)
                counts = merged.counts
                if any(merged.failures):
                    raise AlreadySaid(say_failed_run(merged, dist, out_path, len(units), how_to_continue(options)))
            except KeyboardInterrupt as interrupt:
                # a signal while rank 0 waited in the gather, taken once the gather ended (the other
                # processes, stopped by it too, hung up): the same line as a stop during recognition,
                # not a bare "interrupted" (or under --nproc-per-node "stopped at once")
                raise stopped(interrupt) from None
        else:
            # the shares of an earlier distributed run this one continued: their results were read at
            # the start and are in the file now; left, every later --resume read them over it again
            for path in resultfiles.partial_paths(out_path):
                path.unlink(missing_ok=True)
        ended = time.monotonic()
        seconds = ended - started
        summary = {"output": str(out_path), "videos": counts["videos"], "errors": counts["errors"],
                   "skipped": len(units) - len(pending), "seconds": seconds, "model_calls": scorer.calls,
                   "setup_s": setup_done - started, "first_chunk_s": (share.first_chunk or ended) - setup_done,
                   "data_wait_s": share.waited, "model_threads": share.threads.threads,
                   "bad_frames": counts["bad_frames"], "decode_device": options.decode_device, "folded_bn": n_folded,
                   "videos_per_s": counts["videos"] / seconds if seconds > 0 else 0.0}
        if dataset.decode_share is not None:  # decode_device "mixed": the GPU's final share of the chunks
            summary.update(gpu_decode_share=round(dataset.decode_share.share, 3),
                           gpu_decode_share_history=dataset.decode_share.history)
        if dist.is_main and announce:
            rate = f", {summary['videos_per_s']:.2f} videos/s" if counts["videos"] else ""
            extra = f", {counts['errors']} unreadable (listed under 'errors')" if counts["errors"] else ""
            if counts["bad_frames"]:
                extra += f", {counts['bad_frames']} unreadable frames replaced by their neighbours"
            skipped = f", {summary['skipped']} already done" if summary["skipped"] else ""
            videos_word = "video" if counts["videos"] == 1 else "videos"
            print(f"resnet3d: recognised {counts['videos']} {videos_word} of {options.subset}{extra}{skipped} in "
                  f"{seconds:.1f} s{rate}; results in {out_path}", flush=True)
        return summary
    finally:
        lock.release()


def _out_of_memory(error: Exception, options: RecognitionOptions, distributed: bool) -> Optional[UserError]:
    """A GPU out of memory while scoring, as the line that says the batch and how to go on."""
    plan = options.plan
    batch = describe_clips(options.batch_size, plan.sample_duration, plan.sample_size)
    saved = ("what every process scored is saved" if distributed
             else f"what was scored is saved: {how_to_continue(options)}")
    return out_of_memory_error(error, f"scoring batches of {batch}",
                               f"lower the batch size (resnet3d test --batch-size, resnet3d main "
                               f"--inference_batch_size); {saved}")


def how_to_continue(options: RecognitionOptions) -> str:
    """How a stopped run's saved results are continued: ``resnet3d main`` continues what the same
    weights and settings made by itself; ``resnet3d test`` is asked to, with --resume."""
    if options.resume is None:
        return "recognising again with the same weights and settings continues from them"
    return "continue with --resume"


def _decoded_ahead(chunks: Iterable[dict], plan: ViewPlan, device: Optional[torch.device],
                   share: Optional[DecodeShare] = None) -> Iterator[Tuple[dict, Optional[Future], Waits]]:
    """``(chunk, None, waits)`` for chunks the workers decoded; chunks of JPEG bytes come with the
    (finished) future of ``assemble_views`` on ``device``, run in ``feed.decode_thread``
    ``AHEAD`` chunks ahead: the decoding (which blocks its caller until the whole chunk is
    decoded) overlaps the main thread's scoring of the chunks before it. ``share``: decode_device
    "mixed" (``feed.started_ahead``)."""
    if device is None:  # every chunk decoded by the workers: nothing to start ahead
        return started_ahead(chunks, lambda chunk: None, ahead=1)
    device = with_index(device)

    def assemble(chunk: dict) -> Tuple[torch.Tensor, int]:
        with on_device_of(device):
            return assemble_views(chunk, plan, device)

    def start(chunk: dict) -> Optional[Future]:
        encoded = "jpeg" in chunk and "error" not in chunk
        return decode_thread().submit(assemble, chunk) if encoded else None

    return started_ahead(chunks, start, AHEAD, share)


def _assemble_device(decode_device: str, device: torch.device,
                     assemble_device: Optional[torch.device]) -> Optional[torch.device]:
    """Where encoded chunks are decoded: None when the workers decode (decode_device "cpu"), else
    ``assemble_device`` if given, else the model's device, which must be a CUDA GPU (one line
    saying so otherwise: ``gpu_decode.check_decode_device``)."""
    from resnet3d.data.gpu_decode import check_decode_device

    if decode_device == "cpu":
        return None
    if assemble_device is not None:
        return torch.device(assemble_device)
    check_decode_device(decode_device, device)
    return device


def _loader(dataset: WindowDataset, num_workers: int, pin_memory: bool = False):
    """Workers hand over chunks as they are. ``pin_memory`` (on CUDA): the loader's pinning
    thread copies each chunk into pinned memory, and the main thread sends its rows to the device
    at once (a DMA), where the batcher joins them: the copy of every view (~9 ms per batch of 64
    16x112x112 views) is off the main thread, which on a GPU bounds recognition. On the CPU the
    batcher joins the chunks as they are."""
    from resnet3d.data.loader import WorkerLoader, init_loader_worker

    workers = max(0, min(int(num_workers), len(dataset.units)))
    extra: Dict[str, Any] = {}
    if workers:
        prefetch = fit_prefetch(_chunk_bytes(dataset), workers, 2, sharers=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        extra = {"prefetch_factor": prefetch, "worker_init_fn": init_loader_worker, "persistent_workers": False}
    if dataset.decode_share is not None:  # a change of share shows after the chunks the loader already holds
        dataset.decode_share.lag = workers * extra.get("prefetch_factor", 0)
    return WorkerLoader(dataset, batch_size=None, num_workers=workers, pin_memory=pin_memory, **extra)


def _chunk_bytes(dataset: WindowDataset) -> int:
    """Bytes of the largest chunk a worker hands over in shared memory; 0 when unknown (``nocrop``)
    or small (JPEG bytes)."""
    plan = dataset.plan
    if dataset.encoded or plan.crop == "nocrop":
        return 0
    return plan.chunk_rows * plan.sample_duration * plan.sample_size ** 2 * dataset.cfg.n_channels


__all__ = ["RecognitionOptions", "options_from_config", "run_recognition", "recognition_settings", "output_path",
           "Scorer", "prepare_for_inference", "prepare_model"]
