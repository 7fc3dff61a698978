"""GRU text and motion evaluators (Guo et al. 2022, text-to-motion), on head-centric motion.

Shapes follow the public evaluator (DESIGN §7): movement encoder Conv1d(D, 512, 4, 2, 1) ->
Dropout 0.2 -> LeakyReLU 0.2 -> Conv1d(512, 512, 4, 2, 1) -> Dropout -> LeakyReLU -> Linear
(one unit per 4 frames); motion encoder Linear(512, 1024) -> bidirectional GRU(1024) with a
learned initial state -> Linear(2048, 1024) -> LayerNorm -> LeakyReLU -> Linear(1024, 512); text
encoder (GloVe 300 + Linear(15 -> 300) of the POS one-hot) -> Linear(300, 512) -> bidirectional
GRU(512) -> the same head -> 512. Parameter names match the original's `MovementConvEncoder`,
`MotionEncoderBiGRUCo` and `TextEncoderBiGRUCo`.

`TextMotionEvaluator` bundles the three networks with the word vectors, the tagger name and the
motion normalisation (mean/std of the training split's head-centric features) and saves them as
``evaluators.safetensors`` + ``evaluators.json`` in one folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from egotwin_bench.constants import HEAD_CENTRIC_DIM
from egotwin_bench.curation.shards import atomic_write_text
from egotwin_bench.motion import head_centric
from egotwin_bench.estimators.text_features import (
    POS_DIM,
    WORD_DIM,
    LexiconTagger,
    SpacyTagger,
    WordVectorizer,
    WordVectors,
)
from egotwin_bench.weights import load_checked

UNIT_LENGTH: int = 4
"""Motion frames per movement-encoder unit (two stride-2 convolutions)."""

WEIGHTS_FILE = "evaluators.safetensors"
CONFIG_FILE = "evaluators.json"


class MovementConvEncoder(nn.Module):
    """(B, T, D) motion features -> (B, T // 4, 512) movement units."""

    def __init__(self, input_size: int, hidden_size: int = 512, output_size: int = 512):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv1d(input_size, hidden_size, 4, 2, 1),
            nn.Dropout(0.2),
            nn.LeakyReLU(0.2),
            nn.Conv1d(hidden_size, output_size, 4, 2, 1),
            nn.Dropout(0.2),
            nn.LeakyReLU(0.2),
        )
        self.out_net = nn.Linear(output_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_net(self.main(x.transpose(1, 2)).transpose(1, 2))


class _BiGRUCo(nn.Module):
    """Linear embedding -> bidirectional GRU from a learned initial state -> MLP head on the last states."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.input_emb = nn.Linear(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.output_net = nn.Sequential(
            nn.Linear(hidden_size * 2, hidden_size),
            nn.LayerNorm(hidden_size),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden_size, output_size),
        )
        self.hidden = nn.Parameter(torch.randn(2, 1, hidden_size))

    def _encode(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        emb = self.input_emb(x)
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed, self.hidden.expand(2, x.shape[0], self.hidden_size).contiguous())
        return self.output_net(torch.cat([last[0], last[1]], dim=-1))


class MotionEncoderBiGRUCo(_BiGRUCo):
    """(B, U, 512) movement units + (B,) unit counts -> (B, 512) motion embedding."""

    def __init__(self, input_size: int = 512, hidden_size: int = 1024, output_size: int = 512):
        super().__init__(input_size, hidden_size, output_size)

    def forward(self, units: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self._encode(units, lengths)


class TextEncoderBiGRUCo(_BiGRUCo):
    """(B, L, 300) word vectors + (B, L, 15) POS one-hots + (B,) lengths -> (B, 512) text embedding."""

    def __init__(self, word_size: int = WORD_DIM, pos_size: int = POS_DIM, hidden_size: int = 512,
                 output_size: int = 512):
        super().__init__(word_size, hidden_size, output_size)
        self.pos_emb = nn.Linear(pos_size, word_size)

    def forward(self, words: torch.Tensor, pos: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self._encode(words + self.pos_emb(pos), lengths)


@dataclass
class EvaluatorConfig:
    """What a trained evaluator folder records besides its weights."""

    motion_dim: int = HEAD_CENTRIC_DIM
    representation: str = head_centric.VERSION
    movement_hidden: int = 512
    movement_latent: int = 512
    motion_hidden: int = 1024
    text_hidden: int = 512
    embedding: int = 512
    max_text_len: int = 20
    tagger: str = LexiconTagger.name
    """`LexiconTagger.name`, or ``spacy:<lang>_<name>-<version>`` of the spaCy pipeline trained with."""
    tagger_pipeline: str = ""
    """For a spaCy tagger: the pipeline name or folder to load it from."""
    words: list[str] = field(default_factory=list)
    training: dict = field(default_factory=dict)
    """Training summary (data, steps, validation R-Precision) written by the trainer."""


class TextMotionEvaluator(nn.Module):
    """Text and motion encoders in one embedding space, with their input normalisation."""

    def __init__(self, config: EvaluatorConfig, word_vectors: WordVectors | None = None,
                 mean: np.ndarray | None = None, std: np.ndarray | None = None):
        super().__init__()
        self.config = config
        c = config
        self.movement_encoder = MovementConvEncoder(c.motion_dim, c.movement_hidden, c.movement_latent)
        self.motion_encoder = MotionEncoderBiGRUCo(c.movement_latent, c.motion_hidden, c.embedding)
        self.text_encoder = TextEncoderBiGRUCo(WORD_DIM, POS_DIM, c.text_hidden, c.embedding)
        self.register_buffer("mean", torch.zeros(c.motion_dim) if mean is None else torch.as_tensor(mean).float())
        self.register_buffer("std", torch.ones(c.motion_dim) if std is None else torch.as_tensor(std).float())
        vectors = word_vectors.vectors if word_vectors is not None else np.zeros((len(c.words), WORD_DIM), np.float32)
        self.register_buffer("word_vectors", torch.as_tensor(vectors))
        if word_vectors is not None:
            c.words = list(word_vectors.words)
        if c.representation != head_centric.VERSION:
            raise ValueError(f"evaluator was trained on {c.representation!r} motion features; this toolkit "
                             f"computes {head_centric.VERSION!r}: retrain it with `egotwin-bench train-evaluators`")
        if c.tagger != LexiconTagger.name and not (c.tagger.startswith("spacy:") and c.tagger_pipeline):
            raise ValueError(f"evaluator was trained with tagger {c.tagger!r}; this toolkit has {LexiconTagger.name!r} "
                             "or a spaCy pipeline (tagger_pipeline)")
        self.tagger: LexiconTagger | SpacyTagger | None = None
        self._vectorizer: WordVectorizer | None = None

    def _make_tagger(self) -> LexiconTagger | SpacyTagger:
        """The tagger the evaluator was trained with (a spaCy pipeline must be the same version)."""
        if self.config.tagger == LexiconTagger.name:
            return LexiconTagger()
        tagger = SpacyTagger.load(self.config.tagger_pipeline)
        if tagger.name != self.config.tagger:
            raise ValueError(f"evaluator was trained with {self.config.tagger!r}; {self.config.tagger_pipeline!r} "
                             f"loads {tagger.name!r}")
        return tagger

    @property
    def vectorizer(self) -> WordVectorizer:
        if self._vectorizer is None:
            vecs = WordVectors(self.config.words, self.word_vectors.cpu().numpy())
            self.tagger = self.tagger or self._make_tagger()
            self._vectorizer = WordVectorizer(vecs, self.tagger, self.config.max_text_len)
        return self._vectorizer

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std

    def embed_motion(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, D) raw (unnormalised) motion features -> (B, 512)."""
        if features.shape[-1] != self.config.motion_dim:
            raise ValueError(f"motion features must be (B, T, {self.config.motion_dim}), got {tuple(features.shape)}")
        units = self.movement_encoder(self.normalize(features))
        lengths = torch.full((features.shape[0],), features.shape[1] // UNIT_LENGTH, dtype=torch.int64)
        return self.motion_encoder(units[:, : int(lengths[0])], lengths)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """Prompts -> (B, 512)."""
        words, pos, lengths = self.vectorizer.batch(texts)
        dev = self.mean.device
        return self.text_encoder(torch.as_tensor(words, device=dev), torch.as_tensor(pos, device=dev),
                                 torch.as_tensor(lengths))

    def save(self, out_dir: str | Path) -> None:
        """Write evaluators.safetensors + evaluators.json into `out_dir` (atomic per file)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".{WEIGHTS_FILE}.tmp"
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(tmp))
        tmp.replace(out / WEIGHTS_FILE)
        atomic_write_text(json.dumps(asdict(self.config), indent=1), out / CONFIG_FILE)

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> "TextMotionEvaluator":
        """Load a folder written by `save` (raises FileNotFoundError saying how to make one, and
        `WeightsMismatchError` when the weights do not fit the config's architecture exactly)."""
        folder = Path(folder).expanduser()
        missing = [f for f in (WEIGHTS_FILE, CONFIG_FILE) if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"GRU evaluators: {', '.join(missing)} not found in {folder}. Train them with "
                "`egotwin-bench train-evaluators --dataset DATASET --glove glove.6B.300d.txt --out DIR`."
            )
        config = EvaluatorConfig(**json.loads((folder / CONFIG_FILE).read_text()))
        model = load_checked(cls(config), folder / WEIGHTS_FILE, f"the GRU evaluators of {folder / CONFIG_FILE}")
        return model.to(device).eval()
