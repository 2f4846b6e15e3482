"""Typed configuration: one dataclass per concern, mirrored by the YAML groups under conf/.

The dataclasses are registered with Hydra's ConfigStore as schemas, so every YAML file and every
command-line override is checked against them: an unknown key or a wrong type fails at start-up
with the key's name. Method configs are a config group with one schema per method
(`method/<name>_schema`); the trainer reads `cfg.method.name` to pick the method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from bljust.errors import UserError


@dataclass
class DemoCorpusConfig:
    """Sizes of the synthesised demo corpus (minutes of audio per split)."""

    seed: int = 0
    train_minutes: float = 15.0
    unlabelled_minutes: float = 120.0
    dev_minutes: float = 10.0
    test_minutes: float = 10.0
    workers: int = 2


@dataclass
class RecipeConfig:
    """Where a data set lives and which of its folders play which role.

    A split entry is a folder in LibriSpeech layout (speaker/chapter/utt.flac + chapter.trans.txt;
    for unlabelled data any folder of audio) or a manifest file: a CSV/JSONL table of
    `audio,text[,speaker][,id]` or a lhotse CutSet. Relative entries are read from `labelled_dir`
    (labelled) or `corpus_dir` (the others); absolute ones as they are.
    """

    name: str = "demo"
    # demo: synthesised on first use; librispeech: LibriSpeech / Libri-light trees that must exist;
    # custom: the user's own folders and manifests
    source: str = "demo"
    corpus_dir: str = "data/demo/corpus"
    labelled_dir: Optional[str] = None  # root of the labelled entries; None = corpus_dir
    data_dir: str = "data/demo"  # prepare writes manifests, CMVN stats and tokenizer here
    labelled: list[str] = field(default_factory=lambda: ["train"])
    unlabelled: list[str] = field(default_factory=lambda: ["unlabelled"])
    dev: list[str] = field(default_factory=lambda: ["dev"])
    test: list[str] = field(default_factory=lambda: ["test"])
    wandb_project: str = "bljust-demo"
    demo: DemoCorpusConfig = field(default_factory=DemoCorpusConfig)


@dataclass
class TextConfig:
    """Transcript normalisation, applied alike to training labels, tokenizer and scored references.

    Default: LibriSpeech style (upper case, A-Z and apostrophe). Other languages or casing: e.g.
    `text.case=lower text.keep="a-z0-9'"` or `text.keep="A-ZÄÖÜß'"`.
    """

    case: str = "upper"  # upper | lower | keep
    keep: str = "A-Z'"  # a regex character class body: every other character becomes a space


@dataclass
class FeatureConfig:
    """Log-mel filterbank front end (Kaldi-compatible fbank, 25 ms window, 10 ms hop)."""

    sample_rate: int = 16000
    num_mel_bins: int = 80
    max_utt_seconds: float = 30.0  # longer utterances are skipped and counted
    # audio recorded below sample_rate (8 kHz telephone audio): upsample (counted by prepare) | refuse
    # (skipped and counted as low_sample_rate)
    low_rate: str = "upsample"


@dataclass
class SpecAugmentConfig:
    """SpecAugment on supervised batches only (frequency and time masks, data/features.py)."""

    enabled: bool = True
    freq_masks: int = 2
    freq_mask_width: int = 27
    time_masks: int = 4
    time_mask_width: int = 40  # frames of 10 ms
    time_mask_max_frac: float = 0.05  # per mask, as a fraction of the utterance


@dataclass
class TokenizerConfig:
    """SentencePiece model trained by `prepare` on the labelled transcripts."""

    model_type: str = "char"  # char | unigram | bpe
    vocab_size: int = 0  # ignored for char; required for unigram/bpe


@dataclass
class ModelConfig:
    """Conformer-CTC encoder shape. Conv subsampling by 4 turns 10 ms frames into 40 ms frames."""

    name: str = "tiny"
    input_dim: int = 80
    subsampling_channels: int = 64
    d_model: int = 144
    num_layers: int = 4
    num_heads: int = 4
    ff_mult: int = 4
    conv_kernel: int = 15
    dropout: float = 0.1


@dataclass
class BestRQConfig:
    """BEST-RQ targets and masking. Paper defaults: one 8192-entry codebook of dim 16, p=0.01, 400 ms."""

    codebook_size: int = 8192
    num_codebooks: int = 1
    codebook_dim: int = 16
    mask_prob: float = 0.01  # probability that a 40 ms frame starts a masked span
    mask_span_ms: float = 400.0
    noise_std: float = 0.1
    seed: int = 1234  # the quantiser's own seed: the same targets whatever train.seed is
    # What the quantiser sees: "global" = the CMVN-normalised input as is; "utterance" = each
    # utterance re-normalised to zero mean, unit variance per feature, so speaker and channel
    # offsets do not decide the code.
    target_norm: str = "global"


@dataclass
class InfoNCEConfig:
    """Masked contrastive objective (CPC/wav2vec 2.0 style) with in-batch negatives."""

    proj_dim: int = 128
    temperature: float = 0.1
    mask_prob: float = 0.01
    mask_span_ms: float = 400.0
    noise_std: float = 0.1


@dataclass
class ObjectiveConfig:
    """Which unsupervised objective L_u the methods use, and its settings."""

    unsup: str = "bestrq"  # bestrq | infonce
    bestrq: BestRQConfig = field(default_factory=BestRQConfig)
    infonce: InfoNCEConfig = field(default_factory=InfoNCEConfig)


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine (or constant) decay; gradient clipping by norm."""

    lr: float = 1e-3
    weight_decay: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 500
    schedule: str = "cosine"  # cosine | constant
    min_lr_ratio: float = 0.05
    grad_clip: float = 5.0
    # fused AdamW: one kernel per step, and it skips a non-finite update on the device, so the step
    # needs no host sync. auto = on CUDA (on the CPU the unfused update is as fast and syncs are free)
    fused: str = "auto"  # auto | true | false


@dataclass
class TrainConfig:
    """The training loop: how long, how batches are formed, how often to log/eval/save."""

    max_steps: int = 3000
    seed: int = 0
    max_duration: float = 200.0  # seconds of audio per batch (duration-bucketed), per DDP rank
    accum_grad: int = 1  # batches whose gradients add up to one update (effective batch: x ranks)
    num_buckets: int = 10
    num_workers: int = 2
    log_every: int = 25
    eval_every: int = 500
    ckpt_every: int = 250
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False  # torch.compile the encoder
    # None: static shapes first, dynamic after a recompile (PyTorch's default); true/false force it
    compile_dynamic: Optional[bool] = None
    progress: bool = True
    # Stop when more than this fraction of a data set's utterances is unusable (checked when
    # manifests are built and at every epoch end): a few bad files are skipped, a broken corpus is not.
    max_bad_fraction: float = 0.1
    # Stop after this many consecutive steps with a non-finite loss or gradient (each is skipped).
    max_nonfinite_steps: int = 20


@dataclass
class EvalConfig:
    """Dev evaluation during training and final evaluation on every dev/test split."""

    max_dev_utts: int = 0  # 0 = whole dev split at every dev evaluation
    # best.pt = lowest dev error of this kind. CER for tiny labelled sets: there an all-blank
    # early model (WER exactly 100) beats every later one whose insertions push WER past 100.
    select_metric: str = "wer"  # wer | cer
    batch_duration: float = 300.0


@dataclass
class LoggingConfig:
    """Where metrics go: always metrics.jsonl; W&B online/offline/disabled (auto = online iff a key)."""

    wandb: str = "auto"  # auto | online | offline | disabled
    group: Optional[str] = None
    tags: list[str] = field(default_factory=list)


@dataclass
class PruneConfig:
    """Successive-halving style pruning for sweeps: at each fraction of training, stop this run if
    `metric` is worse than the median of the finished runs under `sweep_root` at that fraction."""

    enabled: bool = False
    metric: str = "rankme"  # a monitor name (rankme, silhouette, ami, ...) without the monitor/ prefix
    fractions: list[float] = field(default_factory=lambda: [0.2, 0.5])
    sweep_root: Optional[str] = None  # folder searched for finished runs; None = the run folder's parent
    min_finished: int = 2  # fewer finished runs than this: never prune


@dataclass
class MonitorConfig:
    """Label-free monitors (DESIGN.md section 5) on a fixed probe set of (unlabelled) audio."""

    enabled: bool = True
    every_steps: int = 500
    layer: int = 0  # encoder block whose output is probed, 1-based; 0 = the last block
    probe_hours: float = 1.0
    max_frames: int = 50000  # encoder frames (40 ms) kept from the probe set, a fixed subsample
    num_clusters: int = 256
    kmeans_seeds: list[int] = field(default_factory=lambda: [0, 1])  # AMI compares the first two
    kmeans_batch_size: int = 4096
    silhouette_frames: int = 2000  # silhouette is O(n^2): on a fixed subsample
    rank_rtol: float = 1e-3  # numerical rank counts singular values above rank_rtol * the largest
    seed: int = 0  # picks the probe utterances and the frame subsamples
    batch_duration: float = 300.0  # seconds of audio per forward pass over the probe set
    prune: PruneConfig = field(default_factory=PruneConfig)


@dataclass
class MethodConfig:
    """What one training step does. Each method extends this with its own keys."""

    name: str = MISSING


@dataclass
class SupervisedConfig(MethodConfig):
    name: str = "supervised"


@dataclass
class Config:
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: Any = MISSING
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    text: TextConfig = field(default_factory=TextConfig)
    specaug: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    seed: int = 0  # shorthand for sweeps (seed=0,1); conf/config.yaml makes train.seed follow it
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    run_name: str = "seed${train.seed}"
    run_dir: str = "runs/${recipe.name}/${method.name}/${run_name}"
    device: str = "auto"  # auto | cpu | cuda
    init_from: Optional[str] = None  # checkpoint whose weights start the run


@dataclass
class PtftConfig(MethodConfig):
    """Pre-train on L_u for `pretrain_steps`, then fine-tune on L_s for train.max_steps steps."""

    name: str = "ptft"
    pretrain_steps: int = 1000
    pretrain_lr: float = 1e-3
    pretrain_warmup_steps: int = 200
    freeze_encoder_steps: int = 0  # fine-tune only the fresh CTC head for this many steps first


@dataclass
class JustConfig(MethodConfig):
    """Every step: L_s on a labelled batch + alpha * L_u on an unlabelled batch, one optimiser."""

    name: str = "just"
    alpha: float = 0.5


@dataclass
class BLJustConfig(MethodConfig):
    """Penalty-based bilevel joint training (PBGD). Per outer epoch: `explore` lower-level steps
    (or passes) on L_u, then `joint_steps_per_epoch` joint steps; at the end `finetune_steps` of
    supervised-only training. train.max_steps counts the joint steps (the supervised budget).

    Defaults marked (paper) follow the authors' code; the others are ours.
    """

    name: str = "bljust"
    explore: int = 50  # lower-level exploration per outer epoch (paper: 4 passes)
    explore_unit: str = "steps"  # steps | passes (over the unlabelled data)
    explore_lr: float = 1e-3  # (paper)
    # steps on L_u alone before the first outer epoch (on top of its `explore`): a lower-level warm
    # start, so the penalty has a learnt L_u to hold the encoder to from the first joint step
    explore_first: int = 0
    joint_steps_per_epoch: int = 0  # 0 = one pass over the labelled data
    encoder_lr: float = 1e-3  # (paper: 1e-4 for all three groups, on much more data)
    ctc_head_lr: float = 1e-3
    unsup_head_lr: float = 1e-3
    gamma0: float = 0.0  # (paper)
    gamma_max: float = 1.0  # (paper)
    gamma_schedule: str = "linear"  # linear | constant | cosine
    ramp_unit: str = "epochs"  # steps | epochs (of joint training)
    ramp_length: int = 10  # in ramp_unit: gamma reaches gamma_max after this many
    scale_upper_by_inv_gamma: bool = False  # PBGD reference: upper step size x min(1/gamma, 1)
    v_estimate: str = "explore"  # explore (L_u at the end of exploration) | copy (V-PBGD) | none
    v_copy_steps: int = 5  # V-PBGD: L_u descent steps of the copy, at log steps only
    finetune_steps: int = 0  # (paper: 5 epochs)
    finetune_lr: float = 1e-5  # (paper)


@dataclass
class PseudoLabelConfig(MethodConfig):
    """Pseudo-labelling. mode=slimipl (Likhomanenko et al. 2021): `start_step` supervised steps,
    then cycles of `sup_updates` supervised and `pl_updates` pseudo-labelled updates, the labels
    made on the fly by the model itself (greedy CTC, eval mode) and kept in a dynamic cache.
    mode=offline: `teacher` labels the unlabelled set once; the confident labels join the
    labelled data and the model trains on both from its initialisation. train.max_steps counts
    every update, supervised or pseudo-labelled. Demo-sized defaults; (10 h) marks the slimIPL
    LibriSpeech 10 h recipe's value, see docs/methods.md.
    """

    name: str = "pseudo_label"
    mode: str = "slimipl"  # slimipl | offline
    start_step: int = 500  # supervised-only warm-up (10 h: 20000)
    sup_updates: int = 1  # (10 h: 1)
    pl_updates: int = 2  # (10 h: 10)
    cache_size: int = 40  # pseudo-labelled batches in the cache (10 h: 1000)
    replace_prob: float = 0.2  # chance a used cache entry is replaced by a new batch (10 h: 0.1)
    pl_dropout: Optional[float] = None  # dropout from start_step on; None keeps model.dropout (10 h: 0.1 after 0.5)
    teacher: Optional[str] = None  # offline: checkpoint whose greedy labels are used
    confidence: str = "max_posterior"  # max_posterior | logprob (both averaged over frames)
    confidence_threshold: float = 0.0  # keep labels with confidence >= this; 0 with max_posterior keeps all
    label_batch_duration: float = 300.0  # offline labelling pass: seconds of audio per batch


METHOD_SCHEMAS: dict[str, type] = {"supervised": SupervisedConfig, "ptft": PtftConfig, "just": JustConfig,
                                   "bljust": BLJustConfig, "pseudo_label": PseudoLabelConfig}


def sweep_label(method: str, overrides: str) -> str:
    """Folder name of a multirun job: the method plus the overrides that set it apart."""
    # Paths (data roots, init_from) would nest folders and say little; the run's config.yaml has them.
    kept = [o.replace("method.", "", 1) for o in overrides.split(",") if o and "/" not in o]
    label = ",".join([method, *kept])
    if len(label) > 120:  # file names stop at 255 bytes; a hash keeps long labels distinct
        import hashlib

        label = f"{label[:100]}...{hashlib.sha1(label.encode()).hexdigest()[:10]}"
    return label


def register_configs() -> None:
    """Register the schemas so conf/*.yaml are validated against them."""
    if not OmegaConf.has_resolver("sweep_label"):
        OmegaConf.register_new_resolver("sweep_label", sweep_label)
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="model", name="base_model", node=ModelConfig)
    cs.store(group="monitor", name="base_monitor", node=MonitorConfig)
    for name, schema in METHOD_SCHEMAS.items():
        cs.store(group="method", name=f"{name}_schema", node=schema)


class ConfigError(UserError, ValueError):
    """A configuration value that cannot work; the message names the key."""


def validate(cfg: Any) -> None:
    """Reject impossible values at start-up with one line naming the key."""
    checks = [
        (cfg.train.max_steps > 0, "train.max_steps must be > 0"),
        (cfg.train.max_duration > 0, "train.max_duration must be > 0 seconds"),
        (min(cfg.train.log_every, cfg.train.eval_every, cfg.train.ckpt_every) > 0,
         "train.log_every, train.eval_every and train.ckpt_every must be > 0"),
        (cfg.train.num_workers >= 0, "train.num_workers must be >= 0"),
        (cfg.train.num_buckets >= 2, "train.num_buckets must be >= 2 (lhotse's bucketing sampler needs two)"),
        (0.0 <= cfg.train.max_bad_fraction <= 1.0, "train.max_bad_fraction must be in [0, 1]"),
        (cfg.train.max_nonfinite_steps >= 1, "train.max_nonfinite_steps must be >= 1"),
        (cfg.features.max_utt_seconds > 0, "features.max_utt_seconds must be > 0"),
        (0.0 <= cfg.specaug.time_mask_max_frac <= 1.0, "specaug.time_mask_max_frac must be in [0, 1]"),
        (cfg.train.accum_grad >= 1, "train.accum_grad must be >= 1"),
        (cfg.train.accum_grad == 1 or cfg.method.name != "pseudo_label",
         "train.accum_grad > 1 is not supported with method=pseudo_label (its cache-filling steps take no update)"),
        (cfg.optim.lr > 0, "optim.lr must be > 0"),
        (cfg.optim.warmup_steps >= 0, "optim.warmup_steps must be >= 0"),
        (cfg.optim.schedule in ("cosine", "constant"), "optim.schedule must be cosine or constant"),
        (cfg.train.precision in ("auto", "fp32", "bf16"), "train.precision must be auto, fp32 or bf16"),
        (str(cfg.optim.fused) in ("auto", "true", "false", "True", "False"), "optim.fused must be auto, true or false"),
        (cfg.device in ("auto", "cpu", "cuda"), "device must be auto, cpu or cuda"),
        (cfg.eval.select_metric in ("wer", "cer"), "eval.select_metric must be wer or cer"),
        (cfg.logging.wandb in ("auto", "online", "offline", "disabled"),
         "logging.wandb must be auto, online, offline or disabled"),
        (cfg.model.d_model % cfg.model.num_heads == 0, "model.d_model must be divisible by model.num_heads"),
        (cfg.tokenizer.model_type in ("char", "unigram", "bpe"), "tokenizer.model_type must be char, unigram or bpe"),
        (cfg.tokenizer.model_type == "char" or cfg.tokenizer.vocab_size > 0,
         "tokenizer.vocab_size must be > 0 for unigram/bpe"),
        (cfg.objective.unsup in ("bestrq", "infonce"), "objective.unsup must be bestrq or infonce"),
        (0.0 <= cfg.objective.bestrq.mask_prob <= 1.0, "objective.bestrq.mask_prob must be in [0, 1]"),
        (cfg.objective.bestrq.target_norm in ("global", "utterance"),
         "objective.bestrq.target_norm must be global or utterance"),
        (0.0 <= cfg.objective.infonce.mask_prob <= 1.0, "objective.infonce.mask_prob must be in [0, 1]"),
        (cfg.recipe.source in ("demo", "librispeech", "custom"), "recipe.source must be demo, librispeech or custom"),
        (cfg.text.case in ("upper", "lower", "keep"), "text.case must be upper, lower or keep"),
        (cfg.method.name in METHOD_SCHEMAS, f"method.name {cfg.method.name!r} is not one of {sorted(METHOD_SCHEMAS)}"),
    ]
    checks += monitor_checks(cfg.monitor)
    if cfg.method.name == "ptft":
        checks.append((cfg.method.pretrain_steps >= 0, "method.pretrain_steps must be >= 0"))
    if cfg.method.name == "bljust":
        m = cfg.method
        checks += [
            (m.gamma_max >= m.gamma0 >= 0, "method.gamma_max must be >= method.gamma0 >= 0"),
            (m.gamma_schedule in ("linear", "constant", "cosine"), "method.gamma_schedule must be linear, constant or cosine"),
            (m.ramp_unit in ("steps", "epochs"), "method.ramp_unit must be steps or epochs"),
            (m.explore_unit in ("steps", "passes"), "method.explore_unit must be steps or passes"),
            (min(m.explore, m.explore_first, m.finetune_steps, m.joint_steps_per_epoch) >= 0,
             "method.explore, explore_first, finetune_steps and joint_steps_per_epoch must be >= 0"),
            (m.v_estimate in ("explore", "copy", "none"), "method.v_estimate must be explore, copy or none"),
        ]
    if cfg.method.name == "pseudo_label":
        checks += pseudo_label_checks(cfg.method)
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def pseudo_label_checks(m: Any) -> list[tuple[bool, str]]:
    return [
        (m.mode in ("slimipl", "offline"), "method.mode must be slimipl or offline"),
        (m.mode != "offline" or bool(m.teacher), "method.teacher=PATH is required with method.mode=offline"),
        (m.start_step >= 0 and m.sup_updates >= 0 and m.pl_updates >= 1,
         "method.start_step and method.sup_updates must be >= 0 and method.pl_updates >= 1"),
        (m.cache_size >= 1, "method.cache_size must be >= 1"),
        (0.0 <= m.replace_prob <= 1.0, "method.replace_prob must be in [0, 1]"),
        (m.pl_dropout is None or 0.0 <= m.pl_dropout < 1.0, "method.pl_dropout must be in [0, 1) or null"),
        (m.confidence in ("max_posterior", "logprob"), "method.confidence must be max_posterior or logprob"),
        (m.label_batch_duration > 0, "method.label_batch_duration must be > 0 seconds"),
    ]


def monitor_checks(m: Any) -> list[tuple[bool, str]]:
    return [
        (m.every_steps > 0, "monitor.every_steps must be > 0"),
        (m.layer >= 0, "monitor.layer must be >= 0 (0 = the last encoder block)"),
        (m.probe_hours > 0 and m.max_frames > 0, "monitor.probe_hours and monitor.max_frames must be > 0"),
        (m.num_clusters >= 2, "monitor.num_clusters must be >= 2"),
        (len(m.kmeans_seeds) >= 2, "monitor.kmeans_seeds needs two seeds (AMI compares them)"),
        (m.silhouette_frames >= 2, "monitor.silhouette_frames must be >= 2"),
        (all(0.0 < f < 1.0 for f in m.prune.fractions), "monitor.prune.fractions must lie in (0, 1)"),
    ]
