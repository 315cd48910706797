"""The short model card (`README.md`) written into a run directory."""

from __future__ import annotations

from typing import Any

from tfinetune.fit_config import FitConfig


def model_card(config: FitConfig, task: Any, final_metrics: dict | None,
               best_epoch: int | None) -> str:
    """Markdown describing what was fine-tuned (`task`, a `FineTuningTask`), on what, how, and
    how well."""
    monitor = task.monitor.removeprefix("val_")
    train_rows, validation_rows = task.train_rows, task.validation_rows
    lines = [
        "---",
        "library_name: transformers",
        f"pipeline_tag: {task.pipeline_tag}",
        f"base_model: {config.model}",
        "tags: [tensorflow, tfinetune]",
        "---",
        "",
        f"# {config.task} model fine-tuned from `{config.model}`",
        "",
        f"Fine-tuned with tfinetune on `{config.train}` ({train_rows} rows)"
        + (f", validated on `{config.validation}` ({validation_rows} rows)." if config.validation
           else "."),
        "",
        *task.model_card_lines(final_metrics),
        "",
        "## Training",
        "",
        f"- epochs: {config.epochs}, batch size: {config.batch_size}, "
        f"learning rate: {config.learning_rate:g} ({config.schedule} schedule, warmup "
        + (f"{config.warmup_steps} steps" if config.warmup_steps is not None
           else f"ratio {config.warmup_ratio:g}")
        + ")",
        f"- AdamW, weight decay {config.weight_decay:g}, "
        f"gradient clipping {config.max_grad_norm:g},"
        f" seed {config.seed}",
    ]
    if best_epoch is not None:
        lines.append(f"- kept epoch: {best_epoch} (best validation {monitor})" if final_metrics
                     else f"- kept epoch: {best_epoch} (last)")
    if final_metrics:
        lines += [
            "",
            "## Validation results (kept epoch)",
            "",
            "| metric | value |",
            "|---|---|",
        ] + [f"| {name} | {value:.4f} |" for name, value in final_metrics.items()
             if isinstance(value, float)]
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        "tfinetune export RUN_DIR --base-path models/my-model",
        "tfinetune serve --model-name my-model --model-base-path models/my-model",
        "```",
        "",
    ]
    return "\n".join(lines)
