"""Typed configuration: one dataclass per concern, mirrored by the YAML groups under conf/.

The dataclasses are registered with Hydra's ConfigStore as schemas, so every YAML file and every
command-line override is checked against them: an unknown key or a wrong type fails at start-up
with the key's name. Method configs are a config group with one schema per method
(`method/<name>_schema`); the trainer reads `cfg.method.name` to pick the method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from bljust.errors import UserError


# Every choice is an Enum, so OmegaConf rejects a wrong value at composition with the key's name
# and the allowed values. StrEnum members compare equal to their names ("cosine" == Schedule.cosine).
class LowRate(StrEnum):
    upsample = "upsample"  # resampled up to features.sample_rate, counted by prepare
    refuse = "refuse"  # skipped and counted as low_sample_rate


# features.channels: what a file with several channels becomes (a string, not an Enum: it may
# also be a channel number)
CHANNEL_MODES = ("mix", "split")


def parse_channels(value: object, key: str = "features.channels") -> str | int:
    """mix (average the channels into one utterance), split (each channel its own utterance: the
    agent and the customer of a call recorded on two channels) or a channel number (0 = first)."""
    text = str(value).strip()
    if text in CHANNEL_MODES:
        return text
    if text.isdigit():
        return int(text)
    raise ConfigError(f"{key}={value!r}: expected mix, split or a channel number (0 = the first)")


class Source(StrEnum):
    demo = "demo"  # synthesised on first use
    librispeech = "librispeech"  # LibriSpeech / Libri-light trees that must exist
    custom = "custom"  # the user's own folders and manifests
    target = "target"  # the telephone target domain of the adaptation study, synthesised on first use


class Case(StrEnum):
    upper = "upper"
    lower = "lower"
    keep = "keep"


class TokenizerType(StrEnum):
    char = "char"
    unigram = "unigram"
    bpe = "bpe"


# "global" is a keyword, so this one is built by name
TargetNorm = StrEnum("TargetNorm", [("global", "global"), ("utterance", "utterance")])


class Unsup(StrEnum):
    bestrq = "bestrq"
    infonce = "infonce"


class Schedule(StrEnum):
    cosine = "cosine"
    constant = "constant"


class Precision(StrEnum):
    auto = "auto"  # bf16 on CUDA, fp32 on the CPU
    fp32 = "fp32"
    bf16 = "bf16"


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Metric(StrEnum):
    wer = "wer"
    cer = "cer"


class WandbMode(StrEnum):
    auto = "auto"  # online iff an API key is set
    online = "online"
    offline = "offline"
    disabled = "disabled"


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
class TargetCorpusConfig:
    """The telephone target domain (bljust/data/target_corpus.py): flite voices, WordNet text, a phone
    line with noise. `labelled_minutes` picks one of the nested labelled subsets (train_<N>min.csv)."""

    seed: int = 0
    labelled_minutes: int = 15  # one of subsets_minutes: recipe.labelled is train_<N>min.csv
    train_minutes: float = 60.0
    subsets_minutes: list[float] = field(default_factory=lambda: [5.0, 15.0, 60.0])
    unlabelled_minutes: float = 240.0
    dev_minutes: float = 15.0
    test_minutes: float = 15.0
    snr_db: tuple[float, float] = (5.0, 25.0)
    gain_db: tuple[float, float] = (-12.0, 6.0)
    noise_minutes: float = 5.0
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
    source: Source = Source.demo
    corpus_dir: str = "data/demo/corpus"
    labelled_dir: Optional[str] = None  # root of the labelled entries; None = corpus_dir
    data_dir: str = "data/demo"  # prepare writes manifests, CMVN stats and tokenizer here
    labelled: list[str] = field(default_factory=lambda: ["train"])
    unlabelled: list[str] = field(default_factory=lambda: ["unlabelled"])
    dev: list[str] = field(default_factory=lambda: ["dev"])
    test: list[str] = field(default_factory=lambda: ["test"])
    wandb_project: str = "bljust-demo"
    demo: DemoCorpusConfig = field(default_factory=DemoCorpusConfig)
    target: TargetCorpusConfig = field(default_factory=TargetCorpusConfig)


@dataclass
class TextConfig:
    """Transcript normalisation, applied alike to training labels, tokenizer and scored references.

    Default: LibriSpeech style (upper case, A-Z and apostrophe). Other languages or casing: e.g.
    `text.case=lower text.keep="a-z0-9'"` or `text.keep="A-ZÄÖÜß'"`.
    """

    case: Case = Case.upper
    keep: str = "A-Z'"  # a regex character class body: every other character becomes a space


@dataclass
class FeatureConfig:
    """Log-mel filterbank front end (Kaldi-compatible fbank, 25 ms window, 10 ms hop)."""

    sample_rate: int = 16000
    num_mel_bins: int = 80
    max_utt_seconds: float = 30.0  # longer utterances are skipped and counted
    # audio recorded below sample_rate (8 kHz telephone audio): upsample (counted by prepare) | refuse
    # (skipped and counted as low_sample_rate)
    low_rate: LowRate = LowRate.upsample
    # a file with several channels: mix (averaged into one utterance, counted by prepare) | split
    # (each channel its own utterance, for calls with the agent and the customer apart) | N (that
    # channel, 0 = first); a table's `channel` column picks one per row (data/manifests.py)
    channels: str = "mix"


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
class AugmentConfig:
    """Waveform augmentation of supervised batches through lhotse's cut transforms (data/augment.py),
    in the data workers, before features; off by default. Each applies to a cut with its probability."""

    speed_factors: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    speed_prob: float = 0.0  # e.g. 1.0 with [0.9, 1.0, 1.1]: Kaldi's 3-way speed perturbation
    noise: list[str] = field(default_factory=list)  # folders / manifests of noise recordings
    noise_prob: float = 0.0
    noise_snr_db: tuple[float, float] = (10.0, 20.0)
    reverb_prob: float = 0.0  # lhotse's synthetic room impulse responses
    seed: int = 0


@dataclass
class TokenizerConfig:
    """SentencePiece model trained by `prepare` on the labelled transcripts."""

    model_type: TokenizerType = TokenizerType.char
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
    target_norm: TargetNorm = TargetNorm["global"]


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

    unsup: Unsup = Unsup.bestrq
    bestrq: BestRQConfig = field(default_factory=BestRQConfig)
    infonce: InfoNCEConfig = field(default_factory=InfoNCEConfig)


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine (or constant) decay; gradient clipping by norm."""

    lr: float = 1e-3
    weight_decay: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 500
    schedule: Schedule = Schedule.cosine
    min_lr_ratio: float = 0.05
    grad_clip: float = 5.0
    # fused AdamW: one kernel per step, and it skips a non-finite update on the device, so the step
    # needs no host sync. null = on CUDA only (on the CPU the unfused update is as fast and syncs are free)
    fused: Optional[bool] = None


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
    precision: Precision = Precision.auto
    compile: bool = False  # torch.compile the encoder
    # None: static shapes first, dynamic after a recompile (PyTorch's default); true/false force it
    compile_dynamic: Optional[bool] = None
    progress: bool = True
    # Stop when more than this fraction of a data set's utterances is unusable (checked when
    # manifests are built and at every epoch end): a few bad files are skipped, a broken corpus is not.
    max_bad_fraction: float = 0.1
    # Stop after this many consecutive steps with a non-finite loss or gradient (each is skipped).
    max_nonfinite_steps: int = 20
    # A checkpoint that cannot be written (full disk, quota): stop (the previous good one is kept), or
    # continue: train on, count it (save_errors in metrics.jsonl) and retry at the next checkpoint.
    on_save_error: str = "stop"  # stop | continue


@dataclass
class EvalConfig:
    """Dev evaluation during training and final evaluation on every dev/test split."""

    max_dev_utts: int = 0  # 0 = whole dev split at every dev evaluation
    # best.pt = lowest dev error of this kind. CER for tiny labelled sets: there an all-blank
    # early model (WER exactly 100) beats every later one whose insertions push WER past 100.
    select_metric: Metric = Metric.wer
    batch_duration: float = 300.0
    # False: the final evaluation scores the dev splits only, so a tuning run never sees test
    # (python -m bljust.protocol scores test only after its choices are frozen).
    score_test: bool = True


@dataclass
class LoggingConfig:
    """Where metrics go: always metrics.jsonl; W&B online/offline/disabled (auto = online iff a key)."""

    wandb: WandbMode = WandbMode.auto
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
    """Label-free monitors (docs/monitors.md) on a fixed probe set of (unlabelled) audio."""

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
    """What one training step does. Each method extends this with its own keys, in its own module
    (bljust/methods/<name>.py), and checks them in `check()`."""

    name: str = MISSING

    def check(self, cfg: Any) -> list[tuple[bool, str]]:
        """(condition, message) pairs that must hold; `cfg` is the whole run config."""
        return []


@dataclass
class Config:
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: Any = MISSING
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    text: TextConfig = field(default_factory=TextConfig)
    specaug: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    seed: int = 0  # shorthand for sweeps (seed=0,1); conf/config.yaml makes train.seed follow it
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    run_name: str = "seed${train.seed}"
    run_dir: str = "runs/${recipe.name}/${method.name}/${run_name}"
    device: Device = Device.auto
    init_from: Optional[str] = None  # checkpoint whose weights start the run


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
    from bljust.methods import METHODS  # imports every method module, each registering itself

    for name, method in METHODS.items():
        cs.store(group="method", name=f"{name}_schema", node=method.config)


class ConfigError(UserError, ValueError):
    """A configuration value that cannot work; the message names the key."""


def validate(cfg: Any) -> None:
    """Reject impossible values at start-up with one line naming the key. Choices are Enums, so
    OmegaConf has already rejected a value that is not one of them."""
    from bljust.methods import METHODS

    t = cfg.train
    checks = [
        (t.max_steps > 0 or (t.max_steps == 0 and bool(cfg.init_from) and cfg.method.name == "supervised"),
         "train.max_steps must be > 0 (0 only with method=supervised and init_from: score that model as it is)"),
        (t.max_duration > 0, "train.max_duration must be > 0 seconds"),
        (min(t.log_every, t.eval_every, t.ckpt_every) > 0,
         "train.log_every, train.eval_every and train.ckpt_every must be > 0"),
        (t.num_workers >= 0, "train.num_workers must be >= 0"),
        (t.num_buckets >= 2, "train.num_buckets must be >= 2 (lhotse's bucketing sampler needs two)"),
        (0.0 <= t.max_bad_fraction <= 1.0, "train.max_bad_fraction must be in [0, 1]"),
        (t.max_nonfinite_steps >= 1, "train.max_nonfinite_steps must be >= 1"),
        (t.accum_grad >= 1, "train.accum_grad must be >= 1"),
        (cfg.features.max_utt_seconds > 0, "features.max_utt_seconds must be > 0"),
        (0.0 <= cfg.specaug.time_mask_max_frac <= 1.0, "specaug.time_mask_max_frac must be in [0, 1]"),
        (cfg.optim.lr > 0, "optim.lr must be > 0"),
        (cfg.optim.warmup_steps >= 0, "optim.warmup_steps must be >= 0"),
        (cfg.model.d_model % cfg.model.num_heads == 0, "model.d_model must be divisible by model.num_heads"),
        (cfg.tokenizer.model_type == "char" or cfg.tokenizer.vocab_size > 0,
         "tokenizer.vocab_size must be > 0 for unigram/bpe"),
        (0.0 <= cfg.objective.bestrq.mask_prob <= 1.0, "objective.bestrq.mask_prob must be in [0, 1]"),
        (0.0 <= cfg.objective.infonce.mask_prob <= 1.0, "objective.infonce.mask_prob must be in [0, 1]"),
        (cfg.method.name in METHODS, f"method.name {cfg.method.name!r} is not one of {sorted(METHODS)}"),
    ]
    a = cfg.augment
    checks += [
        (all(0.0 <= p <= 1.0 for p in (a.speed_prob, a.noise_prob, a.reverb_prob)),
         "augment.speed_prob, augment.noise_prob and augment.reverb_prob must be in [0, 1]"),
        (all(f > 0 for f in a.speed_factors) and (a.speed_prob == 0 or len(a.speed_factors) > 0),
         "augment.speed_factors must be positive (and not empty when augment.speed_prob > 0)"),
        (a.noise_prob == 0 or len(a.noise) > 0, "augment.noise_prob > 0 needs augment.noise (folders of noise audio)"),
        (a.noise_snr_db[0] <= a.noise_snr_db[1], "augment.noise_snr_db must be [low, high] with low <= high"),
    ]
    checks += monitor_checks(cfg.monitor)
    if cfg.method.name in METHODS:
        checks += method_config(cfg).check(cfg)
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    parse_channels(cfg.features.channels)  # the one-line error for a value that is none of them


def method_config(cfg: Any) -> MethodConfig:
    """The method's settings as its typed dataclass (bljust/methods/<name>.py)."""
    node = cfg.method
    if isinstance(node, MethodConfig):
        return node
    return OmegaConf.to_object(node)  # type: ignore[return-value]


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
