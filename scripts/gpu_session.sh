#!/usr/bin/env bash
# One prepared GPU session for issue 7: the CUDA tests, then the benchmarks, as JSON lines.
#
# On the device machine (one H100/H200, 16 cores, torch + torchvision preinstalled, no network),
# from the repository root, with the wheels it lacks carried in .whl/ (docs/benchmarks.md says
# how to fetch them):
#
#     bash scripts/gpu_session.sh PLAN        # PLAN: 1 (default) to 5, see plan_1 .. plan_5 below
#
# Here, without a GPU, check the script's logic at toy sizes before spending device time:
#
#     SMOKE=1 PY=/work/venv/bin/python OUT=/tmp/gpu-out bash scripts/gpu_session.sh 1   (PY: a python with torch)
#
# Results go to $OUT (the device tool brings that folder back): bench.jsonl (one JSON line per
# measurement, each with "stage"), tests.txt, env.txt, log.txt (every command and its stderr),
# gpu_measures.jsonl (figures the CUDA tests record) and report.md (scripts/gpu_report.py: the
# rows for docs/benchmarks.md). Each stage has a time limit and the whole run a budget (BUDGET seconds), so a slow
# stage costs its own figures, not the session's.
set -u
PLAN=${1:-1}
OUT=${OUT:-$PWD/gpu-out}
BUDGET=${BUDGET:-500}
SMOKE=${SMOKE:-0}
mkdir -p "$OUT"
started=$SECONDS

PY=${PY:-python3}
if ! $PY -c "import av, simplejpeg" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    # PyAV and simplejpeg: the device image lacks them. Offline (--no-index) and without
    # dependencies (--no-deps: pip never touches the image's torch or numpy). A failed install
    # does not end the session: the data sets (simplejpeg) and the stages on them fail, but the
    # CUDA tests and the step benchmarks still give their figures.
    if $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/resnet3d-site .whl/*.whl >>"$OUT/log.txt" 2>&1; then
        export PYTHONPATH=/tmp/resnet3d-site${PYTHONPATH:+:$PYTHONPATH}
    else
        echo "== the wheels in .whl did not install (log.txt): going on without them" | tee -a "$OUT/log.txt"
    fi
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
CORES=$($PY -c "import os; print(len(os.sched_getaffinity(0)))")
WORKERS=$((CORES > 2 ? CORES - 1 : 1))  # the main process keeps one core for the training loop

# stage NAME SECONDS COMMAND...: run COMMAND under a time limit (cut to what the budget has
# left); its JSON lines go to bench.jsonl tagged with the stage, everything else to log.txt.
stage() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - (SECONDS - started)))
    if ((left < 15)); then
        echo "{\"stage\": \"$name\", \"skipped\": \"the session's budget is spent\"}" >>"$OUT/bench.jsonl"
        echo "== $name: skipped, budget spent" | tee -a "$OUT/log.txt"
        return
    fi
    ((limit > left)) && limit=$left
    echo "== $name (limit ${limit}s, at $((SECONDS - started))s): $*" | tee -a "$OUT/log.txt"
    timeout --signal=INT --kill-after=10 "$limit" "$@" 2>>"$OUT/log.txt" |
        $PY -c 'import json, sys
for line in sys.stdin:
    line = line.strip()
    try:
        record = json.loads(line)
    except ValueError:
        print(line, file=sys.stderr)
        continue
    record["stage"] = sys.argv[1]
    print(json.dumps(record), flush=True)' "$name" >>"$OUT/bench.jsonl" 2>>"$OUT/log.txt"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc at $((SECONDS - started))s" | tee -a "$OUT/log.txt"
    grep -F "\"stage\": \"$name\"" "$OUT/bench.jsonl" | cut -c1-400
}

environment() {
    {
        date -u
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
        $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
        $PY -c "import torchvision; print('torchvision', torchvision.__version__)" 2>&1
        $PY -c "import av, simplejpeg; print('av', av.__version__, 'simplejpeg', simplejpeg.__version__)" 2>&1
        echo "cores $CORES, loader workers $WORKERS"
        free -g | head -2
    } >"$OUT/env.txt" 2>&1
    cat "$OUT/env.txt"
}

DATA=${DATA:-/tmp/resnet3d-gpu-data}
if [[ $SMOKE == 1 ]]; then
    # toy sizes on whatever device there is: checks the stages run, not their figures
    DEV=(--device auto) R18=(--model_depth 10 --resnet_widen_factor 0.25) BIG=(--model_depth 18 --resnet_widen_factor 0.25)
    SIZE=(--sample_size 32 --sample_duration 4) STEPS=(--steps 2 --warmup 1) E2E_STEPS=(--steps 2 --warmup 1)
    BATCH=8 BATCHES=8,16
    TRAIN_SET=(--n-classes 8 --videos-per-class 4 --n-frames 8 --size 48 64)
    TEST_SET=(--n-classes 4 --videos-per-class 2 --n-frames 12 --size 48 64)
    WORKERS=2 PRECISIONS=fp32  # bf16 3D convolutions crawl on a CPU
    GPU_DECODE=(--decode-device cuda --assemble-device cpu)  # the encoded path's steps, run on the CPU
else
    DEV=(--device cuda) R18=(--model_depth 18) BIG=(--model_depth 50)
    SIZE=(--sample_size 112 --sample_duration 16) STEPS=(--steps 30 --warmup 8) BATCH=64 BATCHES=64,128
    # end to end: 200 timed steps (after the warm-up and the drained prefetch queue,
    # bench/train_end_to_end.py drain_steps): 30 steps were about one second, mostly served from the queue
    E2E_STEPS=(--steps 200 --warmup 8)
    PRECISIONS=fp32,bf16
    GPU_DECODE=(--decode-device cuda)
    # 240p frames of about 9.5 KB (quality 75, light noise): 144 training videos, enough for batches of 128
    TRAIN_SET=(--n-classes 8 --videos-per-class 24 --n-frames 32 --size 240 320)
    # long videos for recognition (10 windows each), as Kinetics clips are
    TEST_SET=(--n-classes 8 --videos-per-class 6 --n-frames 160 --size 240 320)
fi
R3D=($PY -m resnet3d)
# Few generated videos, listed many times (symlinks): with the 144 videos alone an epoch held two
# batches of 64, so at most two of 15 workers were ever busy and the first session measured the
# loader's start-up (189 clips/s, 95.6% data wait) instead of its throughput.
COPIES=(--video-copies 20) TEST_COPIES=(--video-copies 8)
ON_TRAIN=(--video_path "$DATA/train/jpg" --annotation_path "$DATA/train/annotation.json" --dataset kinetics)
ON_SEEDLIKE=(--video_path "$DATA/train-seedlike/jpg" --annotation_path "$DATA/train-seedlike/annotation.json" --dataset kinetics)
ON_TEST_SEEDLIKE=(--video_path "$DATA/test-seedlike/jpg" --annotation_path "$DATA/test-seedlike/annotation.json" --dataset kinetics)
ON_TEST=(--video_path "$DATA/test/jpg" --annotation_path "$DATA/test/annotation.json" --dataset kinetics)

# the data sets, made in the background while the tests run (the tests need the GPU, not the cores)
# "seedlike" also makes the training set, and makes the recognition set only, at JPEG quality 12:
# files of the size the seed's own extraction (ffmpeg -vf scale=-1:240, default quality) gives (docs/benchmarks.md, frame
# extraction: quality 12 matches ffmpeg's mean size). Decoding cost grows with the file size, so
# quality 75 (about 10-13 KB a frame) is the harder case and the seed's frames (about 3.4 KB) the
# common one.
make_data() {
    rm -rf "$DATA" && mkdir -p "$DATA"
    $PY -m resnet3d.synthetic "$DATA/train" "${TRAIN_SET[@]}" --quality 75 --noise 1 --fmt jpg >>"$OUT/log.txt" 2>&1 &
    local train=$! seedlike=
    if [[ ${1:-} == seedlike ]]; then
        $PY -m resnet3d.synthetic "$DATA/train-seedlike" "${TRAIN_SET[@]}" --quality 12 --noise 1 --fmt jpg \
            >>"$OUT/log.txt" 2>&1 &
        seedlike=$!
    fi
    if [[ ${1:-} == seedlike ]]; then
        $PY -m resnet3d.synthetic "$DATA/test-seedlike" "${TEST_SET[@]}" --quality 12 --noise 1 --fmt jpg >>"$OUT/log.txt" 2>&1
    else
        $PY -m resnet3d.synthetic "$DATA/test" "${TEST_SET[@]}" --quality 75 --noise 1 --fmt jpg >>"$OUT/log.txt" 2>&1
    fi
    wait $train $seedlike
    du -sh "$DATA"/* | tee -a "$OUT/log.txt"
}

tests() {
    local limit=$1
    echo "== tests (limit ${limit}s)" | tee -a "$OUT/log.txt"
    shift
    # no -x: one failing check must not hide the others; figures the tests measure go to
    # gpu_measures.jsonl
    # --kill-after: a test stuck in a CUDA or NCCL wait does not stop on SIGINT, and would eat the
    # stages' time
    # GLOO_SOCKET_IFNAME: the two-process gloo test on one GPU, where the hostname may not resolve
    GLOO_SOCKET_IFNAME=${GLOO_SOCKET_IFNAME:-lo} RESNET3D_GPU_MEASURES="$OUT/gpu_measures.jsonl" timeout --signal=INT --kill-after=20 "$limit" \
        $PY -m pytest -q -p no:cacheprovider -o addopts="" -rfEs --durations=15 "$@" \
        tests/gpu tests/engine/test_feed.py tests/data/test_gpu_decode.py \
        tests/checkpoints/test_torchvision_map.py::test_against_real_torchvision >"$OUT/tests.txt" 2>&1
    echo "== tests: exit $? at $((SECONDS - started))s" | tee -a "$OUT/log.txt"
    tail -n 15 "$OUT/tests.txt"
}

# The stages of each plan are in the order of what issue 7 needs most; their limits add up to
# about the budget, and a stage the budget no longer covers is skipped (and says so).

# Session 1: is every CUDA path right, and the issue's headline figures against the originals'
# scheme: the ResNet-18 step, ResNet-18 and ResNet-50 end to end, recognition.
plan_1() {
    make_data &
    local data=$!
    tests 110 -m "not compile"  # 90 s on an H200 (2026-11-26)
    wait $data
    stage step-r18 90 "${R3D[@]}" bench train --only step --sweep "${DEV[@]}" "${R18[@]}" "${SIZE[@]}" "${STEPS[@]}" \
        --batch-sizes "$BATCHES" --precisions "$PRECISIONS" --compile-modes none --stem-pad 8 --time-budget 75
    stage end-to-end-r18 100 "${R3D[@]}" bench train --only end-to-end "${DEV[@]}" "${R18[@]}" "${SIZE[@]}" \
        "${E2E_STEPS[@]}" "${ON_TRAIN[@]}" "${COPIES[@]}" --batch_size "$BATCH" --n_threads "$WORKERS"
    stage recognition-r18 60 "${R3D[@]}" bench test "${DEV[@]}" "${R18[@]}" "${SIZE[@]}" "${ON_TEST[@]}" \
        "${TEST_COPIES[@]}" --subset training --n_threads "$WORKERS" --batch_size "$BATCH" --compare-fold
    stage end-to-end-r50 100 "${R3D[@]}" bench train --only end-to-end "${DEV[@]}" "${BIG[@]}" "${SIZE[@]}" \
        "${E2E_STEPS[@]}" "${ON_TRAIN[@]}" "${COPIES[@]}" --batch_size "$BATCH" --n_threads "$WORKERS"
    [[ $SMOKE == 1 ]] || stage end-to-end-r18-gpu-decode 60 "${R3D[@]}" bench train --only end-to-end --no-baseline \
        --decode-device cuda "${DEV[@]}" "${R18[@]}" "${SIZE[@]}" "${E2E_STEPS[@]}" "${ON_TRAIN[@]}" \
        "${COPIES[@]}" --batch_size "$BATCH" --n_threads "$WORKERS"
}

# Session 2: what compilation gives. Without it the eager bf16 step (1,999 clips/s on the H200,
# 2026-11-26) bounds every end-to-end figure below issue 7's 2,500 clips/s, so: the compiled step
# sweep first (eager bf16 in both memory formats and the originals' step measured beside it),
# then ResNet-18 end to end compiled on the seed-sized frames, the eager step's kernel profile
# (what compilation can fuse), and the compile tests last. Run it with BUDGET=540.
plan_2() {
    make_data seedlike &
    local data=$!
    stage sweep-r18-compiled 240 "${R3D[@]}" bench train --only step --sweep "${DEV[@]}" "${R18[@]}" "${SIZE[@]}" \
        "${STEPS[@]}" --batch-sizes "$BATCH" --precisions "${PRECISIONS##*,}" \
        --compile-modes default,reduce-overhead,max-autotune-no-cudagraphs --time-budget 220
    wait $data
    stage end-to-end-r18-seedlike-compiled 150 "${R3D[@]}" bench train --only end-to-end "${DEV[@]}" "${R18[@]}" \
        "${SIZE[@]}" "${E2E_STEPS[@]}" "${ON_SEEDLIKE[@]}" "${COPIES[@]}" --batch_size "$BATCH" --n_threads "$WORKERS" \
        --compile-mode default
    stage profile-r18 45 "${R3D[@]}" bench train --only step "${DEV[@]}" "${R18[@]}" "${SIZE[@]}" "${STEPS[@]}" \
        --batch_size "$BATCH" --compile-mode none --profile 10
    tests 100 -m compile  # a cold inductor compile of the step and of evaluation
}

# Session 3: the ResNet-50 step sweep, host RAM over epochs, ResNet-50 end to end compiled, and
# the README's first command.
plan_3() {
    make_data &
    local data=$!
    # bf16 only beside the originals' fp32 step (plan 1 compared fp32 and bf16 on ResNet-18): with
    # fp32 too, the budget ended the sweep before bf16 channels_last_3d, the setting that matters
    stage step-r50 90 "${R3D[@]}" bench train --only step --sweep "${DEV[@]}" "${BIG[@]}" "${SIZE[@]}" "${STEPS[@]}" \
        --batch-sizes "$BATCHES" --precisions "${PRECISIONS##*,}" --compile-modes none --time-budget 75
    wait $data
    # each training video listed 20 times: 45 batches of 64 per epoch, enough to show a trend
    stage epochs-r18 120 "${R3D[@]}" bench train --only end-to-end --no-baseline --epochs 5 --video-copies 20 \
        "${DEV[@]}" "${R18[@]}" "${SIZE[@]}" "${ON_TRAIN[@]}" --batch_size "$BATCH" --n_threads "$WORKERS"
    # issue 7's ResNet-50 goal (1,300 clips/s end to end) is above the eager bf16 step the issue
    # measured (1,263): compiled, the only way there (its eager end to end is plan 4's)
    stage end-to-end-r50-compiled 150 "${R3D[@]}" bench train --only end-to-end --no-baseline "${DEV[@]}" "${BIG[@]}" \
        "${SIZE[@]}" "${E2E_STEPS[@]}" "${ON_TRAIN[@]}" "${COPIES[@]}" --batch_size "$BATCH" --n_threads "$WORKERS" \
        --compile-mode default
    # the README's first command, on the GPU: its summary lines go to log.txt
    [[ $SMOKE == 1 ]] || stage demo 120 "${R3D[@]}" demo --device cuda --workdir /tmp/resnet3d-demo --overwrite
}

# After plan 1 (whose end-to-end and recognition stages ran on two-batch epochs, then on a timed
# window served from the prefetch queue): the headline figures on long runs, on frames of the
# seed's extraction size and on the harder quality-75 ones, and the batch-128 step. Run it with
# BUDGET=540 (about 30 s of the 15 minutes go to the machine's start).
plan_4() {
    make_data seedlike &
    local data=$!
    stage step-r18-b128 90 "${R3D[@]}" bench train --only step --sweep "${DEV[@]}" "${R18[@]}" "${SIZE[@]}" \
        "${STEPS[@]}" --batch-sizes "${BATCHES##*,}" --precisions "${PRECISIONS##*,}" --compile-modes none --time-budget 50
    wait $data
    stage end-to-end-r18-seedlike 90 "${R3D[@]}" bench train --only end-to-end "${DEV[@]}" "${R18[@]}" "${SIZE[@]}" \
        "${E2E_STEPS[@]}" "${ON_SEEDLIKE[@]}" "${COPIES[@]}" --batch_size "$BATCH" --n_threads "$WORKERS"
    stage end-to-end-r18 100 "${R3D[@]}" bench train --only end-to-end "${DEV[@]}" "${R18[@]}" "${SIZE[@]}" \
        "${E2E_STEPS[@]}" "${ON_TRAIN[@]}" "${COPIES[@]}" --batch_size "$BATCH" --n_threads "$WORKERS"
    stage end-to-end-r50-seedlike 90 "${R3D[@]}" bench train --only end-to-end "${DEV[@]}" "${BIG[@]}" "${SIZE[@]}" \
        "${E2E_STEPS[@]}" "${ON_SEEDLIKE[@]}" "${COPIES[@]}" --batch_size "$BATCH" --n_threads "$WORKERS"
    # 768 videos (each listed 24 times, as plan 5): plan 1's 256 were a couple of seconds for ours, mostly set-up
    stage recognition-r18-seedlike 80 "${R3D[@]}" bench test "${DEV[@]}" "${R18[@]}" "${SIZE[@]}" "${ON_TEST_SEEDLIKE[@]}" \
        --video-copies 24 --subset training --n_threads "$WORKERS" --batch_size "$BATCH"
    [[ $SMOKE == 1 ]] || stage end-to-end-r18-gpu-decode 60 "${R3D[@]}" bench train --only end-to-end --no-baseline \
        --decode-device cuda "${DEV[@]}" "${R18[@]}" "${SIZE[@]}" "${E2E_STEPS[@]}" "${ON_TRAIN[@]}" \
        "${COPIES[@]}" --batch_size "$BATCH" --n_threads "$WORKERS"
    # recognition's decoding per core, both sides, no model: the most recognition gains at equal workers
    stage recognition-decode-seedlike 30 "${R3D[@]}" bench test "${ON_TEST_SEEDLIKE[@]}" "${SIZE[@]}" --subset training \
        --decode-only
    stage loader-per-core-seedlike 40 "${R3D[@]}" bench loader "${ON_SEEDLIKE[@]}" "${SIZE[@]}" --batch_size "$BATCH" \
        --n_threads "$WORKERS" --n-batches 8 --repeat 2 --baseline "${GPU_DECODE[@]}"
}

# After plans 2 and 4: decoding with few cores per GPU, the common machine. The same ResNet-18
# run end to end on quality-75 frames with 3 workers, decoded by the workers (cpu), by the GPU
# (cuda: since 2026-11-27 in a thread of its own, four batches ahead) and by both (mixed, the
# share found as it runs); then mixed with every worker; then recognition on the seed-sized
# frames with both decoding (against the per-video scheme: the 10x question) and with the GPU
# alone.
plan_5() {
    make_data seedlike &  # recognition on the seed-sized frames: the common case, and the 10x question
    local data=$!
    tests 80 -k "decod or feed or mixed"  # the decoding thread and mixed mode on CUDA: first run there
    FEW=3
    MIXED_STEPS=(--steps 150 --warmup 8)
    [[ $SMOKE == 1 ]] && MIXED_STEPS=("${E2E_STEPS[@]}")
    wait $data
    stage end-to-end-r18-cpu-3-workers 60 "${R3D[@]}" bench train --only end-to-end --no-baseline "${DEV[@]}" \
        "${R18[@]}" "${SIZE[@]}" "${MIXED_STEPS[@]}" "${ON_TRAIN[@]}" "${COPIES[@]}" --batch_size "$BATCH" --n_threads $FEW
    [[ $SMOKE == 1 ]] || stage end-to-end-r18-cuda-3-workers 60 "${R3D[@]}" bench train --only end-to-end --no-baseline \
        --decode-device cuda "${DEV[@]}" "${R18[@]}" "${SIZE[@]}" "${MIXED_STEPS[@]}" "${ON_TRAIN[@]}" "${COPIES[@]}" \
        --batch_size "$BATCH" --n_threads $FEW
    [[ $SMOKE == 1 ]] || stage end-to-end-r18-mixed-3-workers 70 "${R3D[@]}" bench train --only end-to-end --no-baseline \
        --decode-device mixed "${DEV[@]}" "${R18[@]}" "${SIZE[@]}" "${MIXED_STEPS[@]}" "${ON_TRAIN[@]}" "${COPIES[@]}" \
        --batch_size "$BATCH" --n_threads $FEW
    [[ $SMOKE == 1 ]] || stage end-to-end-r18-mixed 70 "${R3D[@]}" bench train --only end-to-end --no-baseline \
        --decode-device mixed "${DEV[@]}" "${R18[@]}" "${SIZE[@]}" "${E2E_STEPS[@]}" "${ON_TRAIN[@]}" "${COPIES[@]}" \
        --batch_size "$BATCH" --n_threads "$WORKERS"
    # 768 videos (each listed 24 times): plan 1's 256 were a couple of seconds for ours, mostly set-up
    [[ $SMOKE == 1 ]] || stage recognition-r18-seedlike-mixed 100 "${R3D[@]}" bench test --decode-device mixed "${DEV[@]}" \
        "${R18[@]}" "${SIZE[@]}" "${ON_TEST_SEEDLIKE[@]}" --video-copies 24 --subset training --n_threads "$WORKERS" \
        --batch_size "$BATCH"
    [[ $SMOKE == 1 ]] || stage recognition-r18-seedlike-cuda 45 "${R3D[@]}" bench test --no-baseline --decode-device cuda \
        "${DEV[@]}" "${R18[@]}" "${SIZE[@]}" "${ON_TEST_SEEDLIKE[@]}" --video-copies 24 --subset training \
        --n_threads "$WORKERS" --batch_size "$BATCH"
}

environment
"plan_$PLAN"
echo "== done at $((SECONDS - started))s" | tee -a "$OUT/log.txt"
# the rows docs/benchmarks.md needs, from what came back (report.md)
$PY scripts/gpu_report.py "$OUT" >"$OUT/report.md" 2>>"$OUT/log.txt" && cat "$OUT/report.md"
