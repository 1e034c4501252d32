"""``train_proxy``: train a proxy-scale ``StarModel`` briefly on each component, score it.

Each component (a MAD task, or the text corpus) trains a fresh model initialised from the same
seed, as MAD trains one model per task: AdamW, linear warmup then cosine decay to
``min_lr_ratio * lr``, gradient-norm clipping, a step budget and an optional wall-time budget.
On CPU the run is deterministic for a seed (``torch.use_deterministic_algorithms``; batches from
a seeded ``torch.Generator``; the data from ``ProxyConfig.data_seed``).

A candidate that fails while training (non-finite loss, out of memory) gives a ``ProxyResult``
with ``error`` set and the metrics of the components finished before; configuration mistakes
(unknown task, vocabulary too small) raise ``ProxyConfigError``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from star.genome.spec import ArchSpec
from star.proxy.config import ProxyConfig
from star.proxy.heads import AutoEncoderHead, HiddenTap, masked_ce
from star.proxy.result import ProxyResult, TaskMetrics, TextMetrics, aggregate
from star.proxy.tasks import TaskConfigError, TaskDef, build_task, resolve_task
from star.proxy.text import CorpusError, build_text
from star.proxy.width import param_groups, scale_readout_init

CHECK_EVERY = 10  # steps between non-finite checks (a host sync on CUDA)
LOSS_WINDOW = 10  # steps averaged for train_loss_first / train_loss_last


class ProxyConfigError(ValueError):
    """The config cannot run on this spec (names the field and the reason)."""


class CandidateFailure(RuntimeError):
    """The candidate itself failed to train (non-finite loss, out of memory)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def proxy_spec(spec: ArchSpec, config: ProxyConfig) -> ArchSpec:
    """A deployment-scale spec at the config's proxy width (star.genome.scale presets)."""
    from star.genome.scale import PROXY, TINY, scale_spec

    return scale_spec(spec, TINY if config.model_scale == "tiny" else PROXY)


@contextmanager
def _deterministic(threads: int | None) -> Iterator[None]:
    before = torch.are_deterministic_algorithms_enabled()
    warn_before = torch.is_deterministic_algorithms_warn_only_enabled()
    threads_before = torch.get_num_threads()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(threads or 1)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_before)
        torch.set_num_threads(threads_before)


@dataclass
class _Data:
    """One component's tensors on the device; targets -100 where nothing is scored."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    vocab: int  # logits are sliced to this many tokens
    head: str  # "lm" | "autoencoder"


@dataclass
class _Run:
    steps: int
    tokens: int
    wall_time_s: float
    first: float
    last: float
    stopped_early: bool


def _lr_lambda(config: ProxyConfig):  # noqa: ANN202
    warm = int(config.warmup_frac * config.steps)

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, config.steps - warm)
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (
            1 + math.cos(math.pi * min(1.0, progress))
        )

    return f


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX).

    There, oneDNN's bf16 matmul ran 4-12x faster than fp32 on the proxy's shapes (measured on the
    lab's AMD EPYC, 1 thread), which makes bf16 autocast the largest single proxy speed-up; on
    CPUs that would emulate bf16 it is slower, so it stays off there.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def use_amp(config: ProxyConfig, device: torch.device) -> bool:
    """bf16 autocast: on CUDA, and on CPUs with native bf16 matmul, when ``config.amp``."""
    if not config.amp:
        return False
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_fast_bf16())


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate" in text


class _Component:
    """A fresh model (+ head) for one component, its optimiser loop and its evaluation."""

    def __init__(
        self, spec: ArchSpec, data: _Data, config: ProxyConfig, seed: int, device: torch.device
    ) -> None:
        from star.nn import StarModel

        self.data, self.config, self.device = data, config, device
        self.model = StarModel(spec, device=device, seed=seed)
        if config.parametrization == "mup":
            scale_readout_init(self.model, spec.d_model)
        self.head: AutoEncoderHead | None = None
        self.tap: HiddenTap | None = None
        if data.head == "autoencoder":
            gen = torch.Generator().manual_seed(seed + 1)
            self.head = AutoEncoderHead(spec.d_model, data.vocab, data.train_x.shape[1])
            self.head.reset_parameters(gen)
            self.head.to(device)
            self.tap = HiddenTap(self.model.final_norm)
        self.amp = use_amp(config, device)

    def modules(self) -> list[nn.Module]:
        return [m for m in (self.model, self.head) if m is not None]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.model(x)  # (B, T, V_model)
            if self.head is not None and self.tap is not None:
                return self.head(self.tap.take()[:, -1])  # (B, T, V_task)
            return out[..., : self.data.vocab]

    def train(self, steps: int, seed: int, deadline: float | None) -> _Run:
        cfg = self.config
        params = [p for m in self.modules() for p in m.parameters()]
        groups = param_groups(
            self.modules(),
            self.model.spec.d_model,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            width_aware=cfg.parametrization == "mup",
        )
        opt = torch.optim.AdamW(
            groups,
            lr=cfg.lr,
            betas=cfg.betas,
            # one fused kernel over all parameters instead of a Python loop per tensor: the
            # proxy's many small tensors made the optimizer step a large share of a step
            fused=self.device.type in ("cpu", "cuda"),
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
        gen = torch.Generator().manual_seed(seed)
        n = self.data.train_x.shape[0]
        batch = min(cfg.batch_size, n)
        order = torch.randperm(n, generator=gen)
        cursor = 0
        losses: list[torch.Tensor] = []
        for m in self.modules():
            m.train()
        start = time.perf_counter()
        done, stopped = 0, False
        for step in range(steps):
            if deadline is not None and time.perf_counter() > deadline:
                stopped = True
                break
            if cursor + batch > n:
                order, cursor = torch.randperm(n, generator=gen), 0
            idx = order[cursor : cursor + batch].to(self.device)
            cursor += batch
            loss = masked_ce(self.logits(self.data.train_x[idx]), self.data.train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            losses.append(loss.detach())
            done = step + 1
            if done % CHECK_EVERY == 0 or done == steps:
                self._check_finite(losses[-CHECK_EVERY:], done)
        if losses:
            self._check_finite(losses[-CHECK_EVERY:], done)
        wall = time.perf_counter() - start
        values = torch.stack(losses).float().cpu().tolist() if losses else [math.nan]
        return _Run(
            steps=done,
            tokens=done * batch * int(self.data.train_x.shape[1]),
            wall_time_s=wall,
            first=sum(values[:LOSS_WINDOW]) / len(values[:LOSS_WINDOW]),
            last=sum(values[-LOSS_WINDOW:]) / len(values[-LOSS_WINDOW:]),
            stopped_early=stopped,
        )

    def _check_finite(self, recent: list[torch.Tensor], step: int) -> None:
        if recent and not bool(torch.isfinite(torch.stack(recent)).all()):
            raise CandidateFailure(
                f"{self.data.name}: loss is not finite by step {step} "
                "(diverged: lower lr or the architecture is unstable)"
            )

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float, int]:
        """(accuracy at answer positions, mean loss over them, number of answers)."""
        for m in self.modules():
            m.eval()
        correct, total, loss_sum = 0, 0, 0.0
        x_all, y_all = self.data.test_x, self.data.test_y
        for i in range(0, x_all.shape[0], self.config.eval_batch_size):
            x = x_all[i : i + self.config.eval_batch_size]
            y = y_all[i : i + self.config.eval_batch_size]
            logits = self.logits(x).float()
            mask = y != -100
            count = int(mask.sum())
            if count == 0:
                continue
            correct += int((logits.argmax(-1) == y)[mask].sum())
            loss_sum += float(masked_ce(logits, y)) * count
            total += count
        if total and not math.isfinite(loss_sum):
            raise CandidateFailure(f"{self.data.name}: evaluation loss is not finite")
        return (correct / total if total else 0.0), (loss_sum / total if total else math.nan), total

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}

    def close(self) -> None:
        if self.tap is not None:
            self.tap.close()


def _task_data(task: TaskDef, config: ProxyConfig, device: torch.device) -> _Data:
    split = build_task(task, config.data_seed)

    def t(a) -> torch.Tensor:  # noqa: ANN001
        return torch.from_numpy(a.copy()).to(device)

    return _Data(
        task.name,
        t(split.train_inputs),
        t(split.train_targets),
        t(split.test_inputs),
        t(split.test_targets),
        task.vocab_size,
        task.head,
    )


def _plan(spec: ArchSpec, config: ProxyConfig) -> list[TaskDef | str]:
    """The components in order, checked against the spec before any training."""
    plan: list[TaskDef | str] = []
    for name in config.tasks:
        if name == "text":
            if spec.vocab_size < 256:
                raise ProxyConfigError(
                    f"text: the model vocabulary ({spec.vocab_size}) is "
                    "smaller than the 256 byte tokens of byte-level BPE"
                )
            corpus = config.text.corpus
            if corpus is not None and not Path(corpus).expanduser().exists():
                raise ProxyConfigError(f"text.corpus: {corpus} does not exist")
            plan.append("text")
            continue
        try:
            task = resolve_task(name, config.task_params.get(name), config.scale)
        except TaskConfigError as exc:
            raise ProxyConfigError(str(exc)) from None
        if task.vocab_size > spec.vocab_size:
            raise ProxyConfigError(
                f"task_params.{name}.vocab_size: {task.vocab_size} exceeds "
                f"the model vocabulary ({spec.vocab_size})"
            )
        plan.append(task)
    return plan


def train_proxy(
    spec: ArchSpec,
    tasks: ProxyConfig,
    *,
    seed: int,
    device: str | None = None,
    name: str | None = None,
    weights_path: Path | None = None,
) -> ProxyResult:
    """Train ``spec`` (already at proxy scale) on every component of ``tasks`` and score it.

    ``device`` overrides ``tasks.device`` ("auto" = cuda if available, else cpu). With
    ``weights_path`` the trained state_dict of the text component (else the first component)
    is saved there with ``torch.save``.
    """
    config = tasks
    dev = resolve_device(device or config.device)
    label = name or spec.name
    plan = _plan(spec, config)
    t0, c0 = time.perf_counter(), time.process_time()
    done_tasks: dict[str, TaskMetrics] = {}
    text_metrics: TextMetrics | None = None
    total_steps, total_tokens, train_time, stopped = 0, 0, 0.0, False
    saved: str | None = None
    save_task = "text" if "text" in config.tasks else config.tasks[0]
    n_params = 0
    with _deterministic(config.threads):
        try:
            for i, item in enumerate(plan):
                deadline = None
                if config.wall_time_s is not None:
                    left = config.wall_time_s - (time.perf_counter() - t0)
                    deadline = time.perf_counter() + max(0.0, left) / (len(plan) - i)
                if isinstance(item, str):
                    text = build_text(config.text, spec.vocab_size, config.scale)
                    w_train = torch.from_numpy(text.train.copy()).to(dev)
                    w_val = torch.from_numpy(text.val.copy()).to(dev)
                    data = _Data(
                        "text",
                        w_train[:, :-1],
                        w_train[:, 1:],
                        w_val[:, :-1],
                        w_val[:, 1:],
                        spec.vocab_size,
                        "lm",
                    )
                else:
                    data = _task_data(item, config, dev)
                cpu0 = time.process_time()
                comp = _Component(spec, data, config, seed, dev)
                n_params = max(n_params, sum(p.numel() for p in comp.model.parameters()))
                try:
                    run = comp.train(config.steps, seed, deadline)
                    acc, loss, answers = comp.evaluate()
                    if weights_path is not None and data.name == save_task:
                        weights_path.parent.mkdir(parents=True, exist_ok=True)
                        torch.save(comp.state_dict(), weights_path)
                        saved = str(weights_path)
                finally:
                    comp.close()
                cpu = time.process_time() - cpu0
                total_steps += run.steps
                total_tokens += run.tokens
                train_time += run.wall_time_s
                stopped |= run.stopped_early
                if isinstance(item, str):
                    text_metrics = TextMetrics(
                        val_loss=loss,
                        perplexity=math.exp(min(loss, 700.0)),
                        bits_per_byte=loss / math.log(2) / text.val_bytes_per_token,
                        train_loss_first=run.first,
                        train_loss_last=run.last,
                        steps=run.steps,
                        tokens=run.tokens,
                        wall_time_s=run.wall_time_s,
                        vocab_size=spec.vocab_size,
                        seq_len=text.seq_len,
                        source=text.source,
                        train_bytes=text.train_bytes,
                        val_tokens=answers,
                        tokenizer_path=str(text.tokenizer_path),
                        cpu_time_s=cpu,
                    )
                else:
                    done_tasks[item.name] = TaskMetrics(
                        task=item.name,
                        accuracy=acc,
                        chance=item.chance,
                        test_loss=loss,
                        train_loss_first=run.first,
                        train_loss_last=run.last,
                        steps=run.steps,
                        tokens=run.tokens,
                        wall_time_s=run.wall_time_s,
                        vocab_size=item.vocab_size,
                        seq_len=item.seq_len,
                        n_train=item.n_train,
                        n_test=item.n_test,
                        cpu_time_s=cpu,
                    )
        except CorpusError as exc:
            raise ProxyConfigError(str(exc)) from None
        except (CandidateFailure, MemoryError, RuntimeError) as exc:
            if not isinstance(exc, CandidateFailure) and not _is_oom(exc):
                raise
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            message = (
                str(exc)
                if isinstance(exc, CandidateFailure)
                else f"out of memory on {dev}: {str(exc).splitlines()[0][:300]}"
            )
            return ProxyResult.failed(
                label,
                seed,
                message,
                device=str(dev),
                tasks=done_tasks,
                text=text_metrics,
                steps=total_steps,
                wall_time_s=time.perf_counter() - t0,
                cpu_time_s=time.process_time() - c0,
                n_params=n_params,
            )
    return ProxyResult(
        name=label,
        seed=seed,
        device=str(dev),
        tasks=done_tasks,
        text=text_metrics,
        **aggregate(done_tasks, text_metrics, {str(k): w for k, w in config.weights.items()},
                    config.score)._asdict(),
        steps=total_steps,
        wall_time_s=time.perf_counter() - t0,
        cpu_time_s=time.process_time() - c0,
        tokens_per_s=total_tokens / train_time if train_time > 0 else 0.0,
        stopped_early=stopped,
        n_params=n_params,
        weights_path=saved,
        weights_task=save_task if saved else None,
    )
