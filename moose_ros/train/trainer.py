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
from moose_ros.train.stages import class_weights, head_logits, prepare_stage, seg_loss_sum, set_stage_mode
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


#: Probe-shape arguments a probes stage takes from the recipe over its init checkpoint.
_PROBE_SHAPE = ("probe_width", "probe_depth")


def _reshape_probes(model: nn.Module, architecture: str, recipe: dict[str, Any], init: Path) -> nn.Module:
    """``model`` with new, untrained probes of the recipe's width / depth where they differ from ``init``'s.

    The frozen network (every parameter and buffer outside ``probes.``) is copied unchanged.
    """
    from moose_ros.model import build_model

    current = model.model_kwargs
    changes = {k: recipe[k] for k in _PROBE_SHAPE if recipe.get(k) is not None and recipe[k] != current.get(k)}
    if not changes:
        return model
    fresh = build_model(architecture, **{**model.model_kwargs, **changes})
    trunk = {k: v for k, v in model.state_dict().items() if not k.startswith("probes.")}
    missing, unexpected = fresh.load_state_dict(trunk, strict=False)
    if unexpected or any(not k.startswith("probes.") for k in missing):
        raise CheckpointError(f"{init}: its network does not fit a model with {changes}: "
                              f"{(unexpected or [k for k in missing if not k.startswith('probes.')])[:3]}")
    log.info("probes: %s from the recipe (the init checkpoint has %s)", changes,
             {k: current.get(k) for k in changes})
    return fresh.eval()


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
        if stage == "probes":  # the probes are trained afresh: the recipe's probe shape wins too
            model = _reshape_probes(model, meta.architecture, cfg.model.kwargs, init)
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
    run = _StageRun(cfg, stage, Path(out_dir), init=init, resume=resume, device=device, progress=progress)
    return run.run(halt_at=halt_at)


@dataclass
class _Counters:
    """What changes from step to step and survives a resume."""

    step: int = 0
    best: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed_before: float = 0.0
    bad_vals: int = 0


class _StageRun:
    """One stage's model, optimizer, data and bookkeeping; :meth:`run` is the loop."""

    def __init__(self, cfg: TrainConfig, stage: str, out_dir: Path, *, init: str | Path | None,
                 resume: str | Path | None, device: str | None, progress: bool) -> None:
        self.cfg, self.stage, self.scfg, self.out_dir = cfg, stage, cfg.stage(stage), out_dir
        self.progress = progress
        self.dist = D.setup_distributed(device)
        self.dev = self.dist.device
        if self.dist.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
        self.start_from = Path(resume) if resume is not None else resolve_init(stage, self.scfg, out_dir, init)
        self.model, self.meta = _build_model(cfg, stage, self.start_from)
        params = prepare_stage(self.model, stage, seed=cfg.seed, reinit=resume is None)
        self.model.to(self.dev)
        if self.scfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = _optimizer(params, self.scfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _poly(self.scfg))
        self.amp_dtype, self.use_scaler = _amp_setup(self.scfg, self.dev)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_scaler)
        self.counters = _Counters()
        if resume is not None:
            self._restore(Path(resume))
        self.samples = _open_split(cfg, cfg.data.train_split)
        self.train_set, train_module = self._train_data()
        self.loss_weight = self._loss_weight()
        self.net: nn.Module = train_module
        if self.dist.distributed:
            ids = [self.dev.index] if self.dev.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(train_module, device_ids=ids, broadcast_buffers=False)
        self.val_set = _open_split(cfg, cfg.data.val_split)
        # the scale the network works at: the (resized) training image size; random crops keep that scale
        resize = self.scfg.resize
        self.input_size = list(resize) if resize is not None else list(np.asarray(self.samples[0].image).shape[:2])
        self.recipe = self._recipe(rerun=resume is None)
        self.metrics = dict(self.meta.metrics)
        self.t0 = time.monotonic()

    def _restore(self, resume: Path) -> None:
        state_file = _state_path(resume)
        if not state_file.is_file():
            raise CheckpointError(f"--resume {resume}: training state {state_file} is missing")
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        if state.get("stage") != self.stage:
            raise CheckpointError(f"--resume {resume}: saved by stage '{state.get('stage')}', not '{self.stage}'")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        c = self.counters
        c.step = int(state["step"])
        c.best = json.loads(state["best"]) if state.get("best") else None
        c.history = json.loads(state.get("history", "[]"))
        c.elapsed_before = float(state.get("seconds", 0.0))
        log.info("resuming %s at step %d of %d", self.stage, c.step, self.scfg.steps)

    def _train_data(self) -> tuple[Any, nn.Module]:
        """(training set, module the loss is computed on): cached features or augmented images."""
        cfg, scfg, meta = self.cfg, self.scfg, self.meta
        if not scfg.cache_features:
            augment = AugmentConfig(resize=scfg.resize, scale=scfg.scale, crop=scfg.crop, flip=scfg.flip)
            return SegTrainSet(self.samples, augment, mean=meta.mean, std=meta.std, seed=cfg.seed), self.model
        if self.stage == "base":
            raise ConfigError("base.cache_features=true: caching needs a frozen trunk (stages probes, refit only)")
        from moose_ros.train.cache import CachedHeads, FeatureCache, cache_key, cached_features

        train_set = cached_features(
            cache_key(self.start_from, cfg.data.root, cfg.data.train_split, scfg.resize, scfg.flip),
            lambda: FeatureCache(self.model, self.samples, mean=meta.mean, std=meta.std, resize=scfg.resize,
                                 flip=scfg.flip, device=self.dev, channels_last=scfg.channels_last,
                                 progress=self.progress and self.dist.is_main),
        )
        return train_set, CachedHeads(self.model, self.stage)

    def _loss_weight(self) -> torch.Tensor | None:
        """Per-class cross-entropy weights float [C] on the device, or None for ``class_balance`` 0."""
        power = self.scfg.class_balance
        if power == 0:
            return None
        picks = np.linspace(0, len(self.samples) - 1, num=min(500, len(self.samples))).astype(int)
        weight = class_weights((np.asarray(self.samples[int(i)].label) for i in picks),
                               self.meta.num_classes, power, self.meta.ignore_index)
        log.info("%s: class weights (class_balance=%g): %s", self.stage, power,
                 " ".join(f"{n}={w:.2f}" for n, w in zip(self.meta.classes, weight.tolist(), strict=True)))
        return weight.to(self.dev)

    def _recipe(self, *, rerun: bool) -> dict[str, Any]:
        recipe = dict(self.meta.recipe)
        recipe.setdefault("stages", {})
        if rerun and self.stage in recipe["stages"]:  # a stage run again on its own result: keep the earlier run
            earlier = {"stage": self.stage, **recipe["stages"][self.stage], "config": recipe.get("config"),
                       "metrics": self.meta.metrics.get(self.stage)}
            recipe["earlier_runs"] = [*recipe.get("earlier_runs", []), earlier]
        recipe["config"] = self.cfg.to_dict()
        return recipe

    def _loader(self) -> Any:
        scfg = self.scfg
        sampler = ShardedBatchSampler(
            len(self.train_set), scfg.batch_size, total_steps=scfg.steps, seed=self.cfg.seed, rank=self.dist.rank,
            world_size=self.dist.world_size, accum=scfg.accum, start_step=self.counters.step,
        )
        return torch.utils.data.DataLoader(
            self.train_set, batch_sampler=sampler, num_workers=scfg.workers, pin_memory=self.dev.type == "cuda",
            persistent_workers=False,
        )

    def _seconds(self) -> float:
        return time.monotonic() - self.t0 + self.counters.elapsed_before

    def validate(self) -> dict[str, Any] | None:
        """Per-head val mIoU (after the base's BN recalibration), or None without a val split."""
        model, meta, scfg = self.model, self.meta, self.scfg
        if self.stage == "base" and scfg.bn_recalibrate > 0:
            recalibrate_bn(model, self.samples, count=scfg.bn_recalibrate, mean=meta.mean, std=meta.std,
                           resize=scfg.resize, device=self.dev, channels_last=scfg.channels_last)
        if self.val_set is None:
            return None
        res = evaluate_heads(
            model, self.val_set, mean=meta.mean, std=meta.std, num_classes=model.num_classes,
            ignore_index=meta.ignore_index, resize=scfg.resize, device=self.dev, limit=self.cfg.data.val_limit,
            channels_last=scfg.channels_last,
        )
        set_stage_mode(model, self.stage, True)
        return res

    def checkpoint(self, kind: str, record: dict[str, Any] | None) -> None:
        """Write ``<stage>.pt`` (``kind="best"``) or ``<stage>_last.pt`` + its resumable state (rank 0 only)."""
        if not self.dist.is_main:
            return
        c, stage = self.counters, self.stage
        stage_recipe = {**self.recipe, "stages": {**self.recipe["stages"], stage: {
            "steps": c.step, "of_steps": self.scfg.steps, "world_size": self.dist.world_size,
            "seconds": round(self._seconds(), 1), "seed": self.cfg.seed}}}
        stage_metrics = dict(self.metrics)
        if record is not None:
            stage_metrics[stage] = record
            stage_metrics["val"] = record
        path = self.out_dir / (f"{stage}.pt" if kind == "best" else f"{stage}_last.pt")
        _save(path, self.model, self.meta, recipe=stage_recipe, metrics=stage_metrics, input_size=self.input_size)
        if kind == "best":
            return
        torch.save({
            "stage": stage, "step": c.step, "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict() if self.use_scaler else None,
            "best": json.dumps(c.best) if c.best is not None else None, "history": json.dumps(c.history),
            "seconds": self._seconds(),
        }, _state_path(path))

    def _optimizer_step(self, micro_batches: list[tuple[Any, ...]]) -> float:
        """One optimizer step over the accumulated micro-batches; returns the step's loss."""
        scfg, dist, dev, ignore = self.scfg, self.dist, self.dev, self.meta.ignore_index
        _seed_step(self.cfg.seed, dist.rank, self.counters.step)
        valid = torch.tensor([float(sum(int((mb[-1] != ignore).sum()) for mb in micro_batches))],
                             dtype=torch.float64, device=dev)
        norm = max(float(D.all_reduce_sum(valid).item()), 1.0) / dist.world_size
        step_loss = 0.0
        for a, mb in enumerate(micro_batches):
            inputs = [_to_device(v, dev, scfg.channels_last) for v in mb[:-1]]
            y = mb[-1].to(dev, non_blocking=True)
            sync = a == len(micro_batches) - 1 or not dist.distributed
            with contextlib.nullcontext() if sync else self.net.no_sync():
                with torch.autocast(dev.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    outputs = self.net(*inputs)
                loss = sum(seg_loss_sum(lg, y, ignore, self.loss_weight)
                           for lg in head_logits(outputs, self.stage)) / norm
                self.scaler.scale(loss).backward()
            step_loss += float(loss.detach()) / dist.world_size
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return step_loss

    def _validate_and_save(self, loss_avg: float | None, bar: Any) -> bool:
        """Validation step on rank 0: log, keep the best, write the checkpoints; returns "patience ran out"."""
        c, scfg, stage = self.counters, self.scfg, self.stage
        if not self.dist.is_main:
            return False
        record = None
        res = self.validate()
        if res is not None:
            select = _SELECT[stage]
            record = {"step": c.step, "loss": loss_avg, "seconds": self._seconds(), **res}
            c.history.append(record)
            improved = c.best is None or res[select] >= c.best[select] + scfg.min_delta
            if c.best is None or res[select] > c.best[select]:
                c.best = record
                self.checkpoint("best", record)
            c.bad_vals = 0 if improved else c.bad_vals + 1
            with open(self.out_dir / f"{stage}_log.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            bar.write(f"[{stage}] step {c.step}: val global {res['global_miou']:.4f} probes "
                      f"{[round(v, 4) for v in res['probe_miou']]} moose {res['moose_miou']:.4f}")
        elif c.step == scfg.steps:
            self.checkpoint("best", None)
        self.checkpoint("last", record)
        return scfg.patience is not None and c.bad_vals >= scfg.patience and c.step < scfg.steps

    def _after_step(self, loss_avg: float | None, bar: Any, halt_at: int | None) -> bool:
        """Validation / periodic checkpoint after a step; True when the loop must stop."""
        c, scfg = self.counters, self.scfg
        stop = False
        if (scfg.val_every > 0 and c.step % scfg.val_every == 0) or c.step == scfg.steps:
            stop = self._validate_and_save(loss_avg, bar)
            D.barrier()
            stop = D.broadcast_flag(stop, self.dev)
        elif (scfg.save_every > 0 and c.step % scfg.save_every == 0) or c.step == halt_at:
            self.checkpoint("last", None)
        if halt_at is not None and c.step >= halt_at:
            return True
        if stop and self.dist.is_main:
            bar.write(f"[{self.stage}] val {_SELECT[self.stage]} saturated (patience {scfg.patience}); stopping "
                      f"at step {c.step}")
        return stop

    def run(self, *, halt_at: int | None) -> StageResult:
        """The training loop up to ``steps`` (or ``halt_at``, or early stopping)."""
        from tqdm import tqdm

        c, scfg, stage = self.counters, self.scfg, self.stage
        loader = self._loader()
        self.t0 = time.monotonic()
        set_stage_mode(self.model, stage, True)
        bar = tqdm(total=scfg.steps, initial=c.step, desc=stage, disable=not (self.progress and self.dist.is_main),
                   dynamic_ncols=True)
        micro_batches: list[tuple[Any, ...]] = []
        loss_avg, seen, t_window = None, 0, time.monotonic()
        for batch in loader:
            micro_batches.append(tuple(batch))
            if len(micro_batches) < scfg.accum:
                continue
            step_loss = self._optimizer_step(micro_batches)
            micro_batches = []
            c.step += 1
            seen += scfg.batch_size
            if not math.isfinite(step_loss):
                raise ConfigError(f"{stage}: loss became {step_loss} at step {c.step}; lower {stage}.lr")
            loss_avg = step_loss if loss_avg is None else 0.9 * loss_avg + 0.1 * step_loss
            bar.update(1)
            if c.step % scfg.log_every == 0 or c.step == scfg.steps:
                rate = seen / max(time.monotonic() - t_window, 1e-9)
                bar.set_postfix(loss=f"{loss_avg:.4f}", img_s=f"{rate:.2f}",
                                lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
                seen, t_window = 0, time.monotonic()
            if self._after_step(loss_avg, bar, halt_at):
                break
        bar.close()
        D.barrier()
        return StageResult(stage=stage, steps=c.step, checkpoint=self.out_dir / f"{stage}.pt" if self.dist.is_main
                           else None, best=c.best, history=c.history, seconds=self._seconds(), model=self.model)
