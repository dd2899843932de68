"""The training loop shared by the ``base``, ``probes`` and ``refit`` stages.

Files written to ``out_dir`` (rank 0 only):

- ``<stage>.pt``: the stage's result (best validated state, or the last one without validation), a moose_ros
  checkpoint whose meta records the recipe and the per-head val mIoU.
- ``<stage>_last.pt`` + ``<stage>_last.state.pt``: the latest state and what ``resume`` needs (optimizer,
  scheduler, AMP scaler, step, best metric, history). Written at every validation and every ``save_every``.
- ``<stage>_log.jsonl``: one JSON record per validation.

Randomness is a pure function of ``(seed, rank, step)``: the torch RNG is re-seeded at every step and the data
order/augmentation derive from ``(seed, epoch, index)``, so a resumed run continues exactly like an
uninterrupted one, and N ranks see the same global batches as one rank with N accumulation steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from moose_ros.errors import CheckpointError, ConfigError
from moose_ros.train import distributed as D
from moose_ros.train.config import StageConfig, TrainConfig
from moose_ros.train.data import AugmentConfig, SegTrainSet, ShardedBatchSampler
from moose_ros.train.stages import head_logits, prepare_stage, seg_loss_sum, set_stage_mode
from moose_ros.train.validate import evaluate_heads, recalibrate_bn

__all__ = ["StageResult", "resolve_init", "train_stage"]

log = logging.getLogger(__name__)

#: which val metric decides "best" and early stopping, per stage
_SELECT = {"base": "global_miou", "probes": "probe_mean_miou", "refit": "global_miou"}


@dataclass
class StageResult:
    """What :func:`train_stage` returns (on every rank; paths are only written by rank 0)."""

    stage: str
    steps: int
    checkpoint: Path | None
    best: dict[str, Any] | None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    model: nn.Module | None = None


def _state_path(ckpt: Path) -> Path:
    return ckpt.with_name(ckpt.stem + ".state.pt")


def resolve_init(stage: str, scfg: StageConfig, out_dir: Path, init: str | Path | None) -> Path | None:
    """The checkpoint a stage starts from: ``init`` argument > ``<stage>.init`` > ``{out}/base.pt`` (not base)."""
    chosen = str(init) if init is not None else scfg.init
    if chosen is None and stage != "base":
        chosen = "{out}/base.pt"
    if chosen is None:
        return None
    return Path(chosen.replace("{out}", str(out_dir)))


def _build_model(cfg: TrainConfig, stage: str, init: Path | None) -> tuple[nn.Module, Any]:
    from moose_ros.data import CITYSCAPES_CLASSES, CITYSCAPES_COLORS
    from moose_ros.model import CheckpointMeta, build_model, load_checkpoint

    if init is not None:
        if not init.is_file():
            raise CheckpointError(f"{stage}: init checkpoint {init} not found (train the base stage first, or set "
                                  f"{stage}.init / --init)")
        model, meta = load_checkpoint(init)
        dropout = cfg.model.kwargs.get("probe_dropout")  # training-only: the recipe's value wins
        if dropout is not None or "probe_dropout" not in meta.model_kwargs:
            model = build_model(meta.architecture, checkpoint=init, probe_dropout=dropout)
        return model, dataclasses.replace(meta, model_kwargs=dict(model.model_kwargs))
    if stage != "base":
        raise ConfigError(f"stage '{stage}' needs a trained network: set {stage}.init or pass --init")
    kwargs = dict(cfg.model.kwargs)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model.architecture, **kwargs)
    num_classes = model.num_classes
    if num_classes != len(CITYSCAPES_CLASSES):
        classes = tuple(f"class{i}" for i in range(num_classes))
        colors = tuple(((37 * i) % 256, (101 * i) % 256, (197 * i) % 256) for i in range(num_classes))
    else:
        classes, colors = CITYSCAPES_CLASSES, CITYSCAPES_COLORS
    meta = CheckpointMeta.for_model(model, classes=classes, colors=colors)
    return model, meta


def _optimizer(params: list[nn.Parameter], scfg: StageConfig) -> torch.optim.Optimizer:
    if scfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=scfg.lr, momentum=scfg.momentum, weight_decay=scfg.weight_decay)
    return torch.optim.AdamW(params, lr=scfg.lr, weight_decay=scfg.weight_decay)


def _poly(scfg: StageConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if scfg.warmup_steps > 0 and step < scfg.warmup_steps:
            return (step + 1) / scfg.warmup_steps
        return max(0.0, 1.0 - step / scfg.steps) ** scfg.poly_power

    return factor


def _amp_setup(scfg: StageConfig, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use GradScaler)."""
    mode = scfg.amp
    if mode == "auto":
        mode = "fp16" if device.type == "cuda" else "off"
    if mode == "off":
        return None, False
    if mode == "fp16":
        if device.type != "cuda":
            raise ConfigError("amp='fp16' needs CUDA; use amp='bf16' or 'off' on CPU")
        return torch.float16, True
    return torch.bfloat16, False


def _to_device(value: Any, device: torch.device, channels_last: bool) -> Any:
    """Move a batch tensor (or a list of them) to ``device``, 4-D tensors optionally channels-last."""
    if isinstance(value, (list, tuple)):
        return [_to_device(v, device, channels_last) for v in value]
    value = value.to(device, non_blocking=True)
    if channels_last and value.dim() == 4:
        value = value.contiguous(memory_format=torch.channels_last)
    return value


def _seed_step(seed: int, rank: int, step: int) -> None:
    torch.manual_seed((seed * 1_000_003 + rank * 7_919 + step) % (2**63))


def _open_split(cfg: TrainConfig, split: str | None) -> Any:
    from moose_ros.data import open_dataset

    if split is None:
        return None
    return open_dataset(cfg.data.kind, cfg.data.root, split)


def _save(
    path: Path, model: nn.Module, meta: Any, *, recipe: dict[str, Any], metrics: dict[str, Any], input_size: Any
) -> None:
    from moose_ros.model import save_checkpoint

    save_checkpoint(path, model, dataclasses.replace(meta, recipe=recipe, metrics=metrics, input_size=input_size))


def train_stage(
    cfg: TrainConfig,
    stage: str,
    out_dir: str | Path,
    *,
    init: str | Path | None = None,
    resume: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    halt_at: int | None = None,
) -> StageResult:
    """Run one training stage (see the module docstring); works single-process or under torchrun.

    Args:
        cfg: the recipe. ``cfg.stage(stage)`` gives the hyper-parameters.
        stage: "base", "probes" or "refit".
        out_dir: output directory (created).
        init: checkpoint to start from (overrides ``<stage>.init``; probes/refit default ``{out}/base.pt``).
        resume: a ``<stage>_last.pt`` written by an earlier run of the same stage; continues at its step.
        device: "cpu", "cuda" or None (CUDA when available).
        progress: show a tqdm bar on rank 0.
        halt_at: stop this process after step ``halt_at`` with a resumable ``<stage>_last.pt`` (time-sliced or
            pre-emptible jobs); the schedule still runs to ``steps`` when resumed.
    """
    from tqdm import tqdm

    scfg = cfg.stage(stage)
    out_dir = Path(out_dir)
    dist_info = D.setup_distributed(device)
    dev = dist_info.device
    if dist_info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)

    start_from = Path(resume) if resume is not None else resolve_init(stage, scfg, out_dir, init)
    model, meta = _build_model(cfg, stage, start_from)
    params = prepare_stage(model, stage, seed=cfg.seed, reinit=resume is None)
    model.to(dev)
    if scfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(params, scfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _poly(scfg))
    amp_dtype, use_scaler = _amp_setup(scfg, dev)
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    step, best, history, elapsed_before = 0, None, [], 0.0
    if resume is not None:
        state_file = _state_path(Path(resume))
        if not state_file.is_file():
            raise CheckpointError(f"--resume {resume}: training state {state_file} is missing")
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        if state.get("stage") != stage:
            raise CheckpointError(f"--resume {resume}: saved by stage '{state.get('stage')}', not '{stage}'")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step = int(state["step"])
        best = json.loads(state["best"]) if state.get("best") else None
        history = json.loads(state.get("history", "[]"))
        elapsed_before = float(state.get("seconds", 0.0))
        log.info("resuming %s at step %d of %d", stage, step, scfg.steps)

    samples = _open_split(cfg, cfg.data.train_split)
    caching = scfg.cache_features
    if caching and stage == "base":
        raise ConfigError("base.cache_features=true: caching needs a frozen trunk (stages probes, refit only)")
    train_module: nn.Module = model
    if caching:
        from moose_ros.train.cache import CachedHeads, FeatureCache, cache_key, cached_features

        train_set = cached_features(
            cache_key(start_from, cfg.data.root, cfg.data.train_split, scfg.resize, scfg.flip),
            lambda: FeatureCache(model, samples, mean=meta.mean, std=meta.std, resize=scfg.resize, flip=scfg.flip,
                                 device=dev, channels_last=scfg.channels_last,
                                 progress=progress and dist_info.is_main),
        )
        train_module = CachedHeads(model, stage)
    else:
        train_set = SegTrainSet(
            samples, AugmentConfig(resize=scfg.resize, scale=scfg.scale, crop=scfg.crop, flip=scfg.flip),
            mean=meta.mean, std=meta.std, seed=cfg.seed,
        )
    net: nn.Module = train_module
    if dist_info.distributed:
        ids = [dev.index] if dev.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(train_module, device_ids=ids, broadcast_buffers=False)

    val_set = _open_split(cfg, cfg.data.val_split)
    sampler = ShardedBatchSampler(
        len(train_set), scfg.batch_size, total_steps=scfg.steps, seed=cfg.seed, rank=dist_info.rank,
        world_size=dist_info.world_size, accum=scfg.accum, start_step=step,
    )
    loader = torch.utils.data.DataLoader(
        train_set, batch_sampler=sampler, num_workers=scfg.workers, pin_memory=dev.type == "cuda",
        persistent_workers=False,
    )
    # the scale the network works at: the (resized) training image size; random crops keep that scale
    input_size = list(scfg.resize) if scfg.resize is not None else list(np.asarray(samples[0].image).shape[:2])
    recipe = dict(meta.recipe)
    recipe.setdefault("stages", {})
    if resume is None and stage in recipe["stages"]:  # a stage run again on its own result: keep the earlier run
        earlier = {"stage": stage, **recipe["stages"][stage], "config": recipe.get("config"),
                   "metrics": meta.metrics.get(stage)}
        recipe["earlier_runs"] = [*recipe.get("earlier_runs", []), earlier]
    recipe["config"] = cfg.to_dict()
    metrics = dict(meta.metrics)

    def validate() -> dict[str, Any] | None:
        if stage == "base" and scfg.bn_recalibrate > 0:
            recalibrate_bn(model, samples, count=scfg.bn_recalibrate, mean=meta.mean, std=meta.std,
                           resize=scfg.resize, device=dev, channels_last=scfg.channels_last)
        if val_set is None:
            return None
        res = evaluate_heads(
            model, val_set, mean=meta.mean, std=meta.std, num_classes=model.num_classes,
            ignore_index=meta.ignore_index, resize=scfg.resize, device=dev, limit=cfg.data.val_limit,
            channels_last=scfg.channels_last,
        )
        set_stage_mode(model, stage, True)
        return res

    def checkpoint(kind: str, record: dict[str, Any] | None) -> None:
        if not dist_info.is_main:
            return
        stage_recipe = {**recipe, "stages": {**recipe["stages"], stage: {
            "steps": step, "of_steps": scfg.steps, "world_size": dist_info.world_size,
            "seconds": round(time.monotonic() - t0 + elapsed_before, 1), "seed": cfg.seed}}}
        stage_metrics = dict(metrics)
        if record is not None:
            stage_metrics[stage] = record
            stage_metrics["val"] = record
        if kind == "best":
            _save(out_dir / f"{stage}.pt", model, meta, recipe=stage_recipe, metrics=stage_metrics,
                  input_size=input_size)
            return
        last = out_dir / f"{stage}_last.pt"
        _save(last, model, meta, recipe=stage_recipe, metrics=stage_metrics, input_size=input_size)
        torch.save({
            "stage": stage, "step": step, "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if use_scaler else None,
            "best": json.dumps(best) if best is not None else None, "history": json.dumps(history),
            "seconds": time.monotonic() - t0 + elapsed_before,
        }, _state_path(last))

    t0 = time.monotonic()
    select = _SELECT[stage]
    bad_vals = 0
    set_stage_mode(model, stage, True)
    bar = tqdm(total=scfg.steps, initial=step, desc=stage, disable=not (progress and dist_info.is_main),
               dynamic_ncols=True)
    micro_batches: list[tuple[Any, ...]] = []
    loss_avg, seen, t_window = None, 0, time.monotonic()
    stop = False
    for batch in loader:
        micro_batches.append(tuple(batch))
        if len(micro_batches) < scfg.accum:
            continue
        _seed_step(cfg.seed, dist_info.rank, step)
        valid = torch.tensor([float(sum(int((mb[-1] != meta.ignore_index).sum()) for mb in micro_batches))],
                             dtype=torch.float64, device=dev)
        total_valid = float(D.all_reduce_sum(valid).item())
        norm = max(total_valid, 1.0) / dist_info.world_size
        step_loss = 0.0
        for a, mb in enumerate(micro_batches):
            inputs = [_to_device(v, dev, scfg.channels_last) for v in mb[:-1]]
            y = mb[-1].to(dev, non_blocking=True)
            sync = a == len(micro_batches) - 1 or not dist_info.distributed
            ctx = contextlib.nullcontext() if sync else net.no_sync()
            with ctx:
                with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    outputs = net(*inputs)
                loss = sum(seg_loss_sum(lg, y, meta.ignore_index) for lg in head_logits(outputs, stage)) / norm
                scaler.scale(loss).backward()
            step_loss += float(loss.detach()) / dist_info.world_size
        micro_batches = []
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step += 1
        seen += scfg.batch_size
        if not math.isfinite(step_loss):
            raise ConfigError(f"{stage}: loss became {step_loss} at step {step}; lower {stage}.lr")
        loss_avg = step_loss if loss_avg is None else 0.9 * loss_avg + 0.1 * step_loss
        bar.update(1)
        if step % scfg.log_every == 0 or step == scfg.steps:
            rate = seen / max(time.monotonic() - t_window, 1e-9)
            bar.set_postfix(loss=f"{loss_avg:.4f}", img_s=f"{rate:.2f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            seen, t_window = 0, time.monotonic()
        at_val = (scfg.val_every > 0 and step % scfg.val_every == 0) or step == scfg.steps
        if at_val:
            record = None
            if dist_info.is_main:
                res = validate()
                if res is not None:
                    record = {"step": step, "loss": loss_avg, "seconds": time.monotonic() - t0 + elapsed_before,
                              **res}
                    history.append(record)
                    improved = best is None or res[select] >= best[select] + scfg.min_delta
                    if best is None or res[select] > best[select]:
                        best = record
                        checkpoint("best", record)
                    bad_vals = 0 if improved else bad_vals + 1
                    with open(out_dir / f"{stage}_log.jsonl", "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(record) + "\n")
                    bar.write(f"[{stage}] step {step}: val global {res['global_miou']:.4f} probes "
                              f"{[round(v, 4) for v in res['probe_miou']]} moose {res['moose_miou']:.4f}")
                elif step == scfg.steps:
                    checkpoint("best", None)
                checkpoint("last", record)
                stop = scfg.patience is not None and bad_vals >= scfg.patience and step < scfg.steps
            D.barrier()
            stop = D.broadcast_flag(stop, dev)
        elif (scfg.save_every > 0 and step % scfg.save_every == 0) or step == halt_at:
            checkpoint("last", None)
        if halt_at is not None and step >= halt_at:
            break
        if stop:
            if dist_info.is_main:
                bar.write(f"[{stage}] val {select} saturated (patience {scfg.patience}); stopping at step {step}")
            break
    bar.close()
    D.barrier()
    seconds = time.monotonic() - t0 + elapsed_before
    result_path = out_dir / f"{stage}.pt"
    return StageResult(stage=stage, steps=step, checkpoint=result_path if dist_info.is_main else None,
                       best=best, history=history, seconds=seconds, model=model)
