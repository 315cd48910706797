"""The short model card (`README.md`) written into a run directory."""

from __future__ import annotations

from typing import Sequence

from tfinetune.fit_config import FitConfig


def model_card(config: FitConfig, labels: Sequence[str], final_metrics: dict | None,
               best_epoch: int | None, train_rows: int, validation_rows: int | None) -> str:
    """Markdown describing what was fine-tuned, on what, how, and how well."""
    from tfinetune.problem_type import ProblemType

    monitor = ProblemType(config.problem_type).monitor.removeprefix("val_")
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        f"base_model: {config.model}",
        "tags: [tensorflow, tfinetune]",
        "---",
        "",
        f"# Text classifier fine-tuned from `{config.model}`",
        "",
        f"Fine-tuned with tfinetune on `{config.train}` ({train_rows} rows)"
        + (f", validated on `{config.validation}` ({validation_rows} rows)." if config.validation
           else "."),
        "",
        (f"Target: `{labels[0]}` (regression)." if config.problem_type == "regression" else
         f"Labels (class id order, {config.problem_type}): "
         f"{', '.join(f'`{label}`' for label in labels)}."),
        f"Input: `{config.text_column}`"
        + (f" + `{config.text_pair_column}`" if config.text_pair_column else "")
        + f", up to {config.max_length} tokens.",
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
        "tfinetune export RUN_DIR --base-path models/classifier",
        "tfinetune serve --model-name classifier --model-base-path models/classifier",
        "```",
        "",
    ]
    return "\n".join(lines)
