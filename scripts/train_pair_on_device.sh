#!/bin/bash
# Train two configs side by side in one call of the device tool, and copy what comes back to $OUT.
#
#     END=525 bash scripts/train_pair_on_device.sh configs/v8-fine.json configs/v8-ctl.json  [PACKED]
#
# PACKED (default data/packed, from pack_training_data.py; name it in the call's `carry`) is unpacked
# once; each run gets the same wall-clock budget so that both export by END seconds after the start
# (leave the call's timeout_s ~50 s above END). Per run, $OUT gets NAME-model.pt (weight average),
# NAME-model_raw.pt (last step), NAME-log.jsonl and NAME-stdout.log: 8 files, the tool's limit.
set -u
T0=$(date +%s)
export PYTHONUNBUFFERED=1
END=${END:-525}
PACKED=${3:-data/packed}
nvidia-smi -L; python3 -c "import torch, cv2; print(torch.__version__, torch.cuda.is_available(), cv2.__version__)"
python3 scripts/unpack_training_data.py "$PACKED" /tmp/d || exit 1
U=$(( $(date +%s) - T0 )); echo "unpacked at ${U} s"
B=$(( END - U - 10 ))
names=()
for config in "$1" "$2"; do
  name=$(basename "$config" .json); names+=("$name")
  timeout $(( B + 15 )) python3 scripts/train_on_device.py "$config" "$PACKED" "/tmp/$name" --budget-s $B \
    --margin-s 20 --unpacked /tmp/d --device cuda > "/tmp/$name.log" 2>&1 &
done
wait
echo "both ended at $(( $(date +%s) - T0 )) s"
for name in "${names[@]}"; do
  tail -3 "/tmp/$name.log"
  cp "/tmp/$name/run/model.pt" "$OUT/$name-model.pt"; cp "/tmp/$name/run/model_raw.pt" "$OUT/$name-model_raw.pt"
  cp "/tmp/$name/run/log.jsonl" "$OUT/$name-log.jsonl"; cp "/tmp/$name.log" "$OUT/$name-stdout.log"
done
ls -la "$OUT"
