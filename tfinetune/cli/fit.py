"""`tfinetune fit`: fine-tune a pretrained transformer for any task."""

from __future__ import annotations

import json
import logging

import click

from tfinetune.cli.quiet_import import import_tensorflow_quietly
from tfinetune.errors import TfinetuneError
from tfinetune.distribution_strategy import STRATEGIES
from tfinetune.fit_config import PRECISIONS
from tfinetune.fit_config import SCHEDULES
from tfinetune.fit_config import TASKS
from tfinetune.fit_config import FitConfig
from tfinetune.model_source import DEFAULT_MODEL

logger = logging.getLogger(__name__)

SCHEDULE_CHOICES = list(SCHEDULES) + ["constant_with_warmup"]


@click.command("fit", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--task", type=click.Choice(list(TASKS)),
              help="What to fine-tune for: text-classification (labels, multi-label, "
                   "regression), token-classification (NER), question-answering (extractive), "
                   "seq2seq (translation, summarisation). [default: text-classification]")
@click.option("--model", "--model-name-or-path", "model", metavar="NAME_OR_DIR",
              help=f"Hugging Face model name or local directory. [default: {DEFAULT_MODEL}]")
@click.option("--train", "--train-file", "train", metavar="FILE",
              help="Training data: .csv, .tsv, .jsonl or .parquet.")
@click.option("--validation", "--validation-file", "validation", metavar="FILE",
              help="Validation data, same formats; enables per-epoch metrics and best-epoch "
                   "selection on F1.")
@click.option("--output-dir", "output_dir", metavar="DIR",
              help="Run directory for the model, tokenizer, labels, metrics and logs.")
@click.option("--text-column", help="Text column. [default: text]")
@click.option("--text-pair-column", help="Second text column, for sentence-pair tasks.")
@click.option("--label-column", help="Label column (strings or integers). [default: label]")
@click.option("--max-length", "--max-seq-length", "--max-source-length", "max_length", type=int,
              help="Tokens per example after truncation (seq2seq: source tokens; QA: question + "
                   "context window). [default: 128; question-answering 384; seq2seq 512]")
@click.option("--epochs", "--num-train-epochs", "epochs", type=float,
              help="Passes over the training data. [default: 3]")
@click.option("--batch-size", "--per-device-train-batch-size", "batch_size", type=int,
              help="Training batch size per replica; a step trains on this x replicas "
                   "examples. [default: 32]")
@click.option("--eval-batch-size", "--per-device-eval-batch-size", "eval_batch_size", type=int,
              help="Validation batch size. [default: 64]")
@click.option("--learning-rate", type=float, help="Peak learning rate. [default: 5e-5]")
@click.option("--warmup-ratio", type=float,
              help="Fraction of steps warming up linearly. [default: 0.1]")
@click.option("--warmup-steps", type=int, help="Warmup steps; overrides --warmup-ratio.")
@click.option("--schedule", "--lr-scheduler-type", "schedule",
              type=click.Choice(SCHEDULE_CHOICES),
              help="Learning-rate decay after warmup, to 0 at the last step. [default: linear]")
@click.option("--poly-power", type=float, help="Power of the polynomial schedule. [default: 1.0]")
@click.option("--weight-decay", type=float,
              help="Decoupled weight decay, not on biases/LayerNorm. [default: 0.01]")
@click.option("--max-grad-norm", type=float,
              help="Global gradient-norm clipping, 0 to disable. [default: 1.0]")
@click.option("--seed", type=int, help="Random seed. [default: 42]")
@click.option("--precision", type=click.Choice(PRECISIONS),
              help="mixed_bfloat16 computes in bfloat16 with float32 weights: faster on CPUs "
                   "with AVX512-BF16/AMX, slower on others. [default: float32]")
@click.option("--save-steps", type=int,
              help="Back up the training state every N steps so that re-running the command "
                   "resumes after a crash. [default: by time and epoch only]")
@click.option("--save-minutes", type=float,
              help="Also back up whenever this many minutes of training have passed since the "
                   "last backup (and at every epoch end); 0: no time trigger. [default: 10]")
@click.option("--strategy", type=click.Choice(list(STRATEGIES)),
              help="Spread training: one-device; mirrored (this machine's GPUs); multi-worker "
                   "(several machines, tf.distribute.MultiWorkerMirroredStrategy configured by "
                   "the TF_CONFIG environment variable; run the same command on every worker); "
                   "auto: multi-worker when TF_CONFIG names several tasks, mirrored with "
                   "several GPUs, else one-device. [default: auto]")
@click.option("--problem-type", type=click.Choice(["single-label", "multi-label", "regression"]),
              help="One label per text, a set of labels per text, or a number. "
                   "[default: single-label]")
@click.option("--threshold", type=float,
              help="Multi-label: predict a label when its score is at least this. [default: 0.5]")
@click.option("--label-delimiter",
              help="Multi-label: separator of labels written in one field. [default: ,]")
@click.option("--freeze-backbone", is_flag=True, default=None,
              help="Train only the classification head (the pretrained encoder is frozen).")
@click.option("--freeze-layers", type=int, metavar="N",
              help="Freeze the embeddings and the first N transformer layers. [default: 0]")
@click.option("--classifier-dropout", type=float,
              help="Dropout before the classification head. [default: the model's]")
@click.option("--head-hidden-sizes", metavar="N,N,...",
              help="Text classification: extra dense ReLU layers before the output layer, "
                   "e.g. 256,128.")
@click.option("--tokens-column", help="Token classification, JSONL: token-list column. "
                                      "[default: tokens]")
@click.option("--tags-column", help="Token classification, JSONL: BIO tag-list column. "
                                    "[default: tags]")
@click.option("--question-column", help="Question answering: question column. "
                                        "[default: question]")
@click.option("--context-column", help="Question answering: context column. [default: context]")
@click.option("--answers-column", help="Question answering: SQuAD answers column "
                                       "({text: [...], answer_start: [...]}). [default: answers]")
@click.option("--doc-stride", type=int,
              help="Question answering: overlap of windows over long contexts. [default: 128]")
@click.option("--max-answer-length", type=int,
              help="Question answering: longest answer, in tokens. [default: 30]")
@click.option("--version-2-with-negative", is_flag=True, default=None,
              help="Question answering: some questions have no answer (SQuAD v2).")
@click.option("--source-column", help="Seq2seq: source-text column. [default: source]")
@click.option("--target-column", "--summary-column", "target_column",
              help="Seq2seq: target-text column. [default: target]")
@click.option("--source-prefix",
              help='Seq2seq: prefix of every source, e.g. "translate English to German: ".')
@click.option("--max-target-length", type=int,
              help="Seq2seq: target tokens in training and the generation limit. [default: 128]")
@click.option("--num-beams", type=int,
              help="Seq2seq: beams for generation (validation and export); 1 = greedy. "
                   "[default: 1]")
@click.option("--overwrite-output-dir", is_flag=True, default=None,
              help="Start afresh: replace a finished run in --output-dir, or discard the "
                   "backups of an unfinished one instead of resuming it.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="YAML file of these options (or a TrainingArguments JSON); flags override.")
def command(config_file, **options) -> None:
    """Fine-tune a pretrained transformer for a task (--task; text classification by default).

    Reads the training (and validation) file, fine-tunes with AdamW and a warmup-then-decay
    learning rate, keeps the epoch with the best validation score (F1; entity F1 for NER, SQuAD
    F1 for QA, BLEU for seq2seq), and writes a Hugging Face model directory plus fit_config.yaml,
    metrics.json, training_curves.png, a model card and labels.json (classification, NER).
    Re-running the same command after a crash resumes from the last backup.

    \b
    tfinetune fit --model bert-base-uncased --train train.csv --validation dev.csv \\
        --output-dir runs/sentiment --epochs 3 --learning-rate 2e-5
    tfinetune fit --task token-classification --train train.conll --validation dev.conll \\
        --output-dir runs/ner
    tfinetune fit --task question-answering --train train-v1.1.json --output-dir runs/qa
    tfinetune fit --task seq2seq --model t5-small --train pairs.csv \\
        --source-prefix "translate English to German: " --output-dir runs/en-de
    """
    try:
        config = FitConfig.from_options(options, config_file)
        import_tensorflow_quietly()
        import tfinetune

        result = tfinetune.fit(config)
    except TfinetuneError as error:
        raise click.ClickException(str(error)) from error
    if not result.chief:  # a multi-worker run's other workers write nothing
        click.echo(json.dumps({"output_dir": None, "task": config.task, "chief": False}))
        return
    summary = {"output_dir": str(result.output_dir), "task": config.task,
               "best_epoch": result.best_epoch, "labels": result.labels}
    if result.validation_metrics:
        summary["validation"] = {name: value for name, value in result.validation_metrics.items()
                                 if isinstance(value, float)}
    click.echo(json.dumps(summary))

