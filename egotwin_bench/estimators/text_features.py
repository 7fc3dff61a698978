"""Word features for the GRU text evaluator: GloVe vectors + 15-way part-of-speech one-hots.

Follows the text-to-motion evaluator of Guo et al. 2022 (`WordVectorizer`): a sentence becomes
``sos, w_1 .. w_n (n <= 20), eos`` padded with ``unk``; each token gets its 300-d GloVe vector
and a one-hot over `POS_CATEGORIES`, where motion-relevant words ("VIP" lists: locations, body
parts, objects, actions, manner) override their grammatical tag. Words outside the GloVe
vocabulary get the ``unk`` vector and the OTHER tag.

Part-of-speech tagging. The original tags with spaCy's `en_core_web_sm`, which is not published
on PyPI (only on the spaCy model releases; the PyPI copies are third-party re-uploads), and
NLTK's tagger downloads its data at run time; neither fits "no network at run time". We use
`LexiconTagger`: a closed-class lexicon (determiners, adpositions, pronouns, auxiliaries,
numerals), a verb list covering everyday and Nymeria-style activity narration, suffix rules
(-ly adverbs, -ful/-ous/... adjectives, -ing/-ed verb forms) and NOUN as the default, with a
rule lemmatiser (-s/-es/-ies/-ing/-ed, a few irregular forms). It is deterministic and recorded
by name in every trained evaluator, so the same tagger is used at training and evaluation time.
It is not spaCy: tags differ on ambiguous words (e.g. "to" before a verb is ADP here).

Tokens follow the original's `process_text` (HumanML3D ``text_process.py``): hyphens removed,
non-alphabetic tokens dropped ("n't", "'s", digits, punctuation), and only NOUN and VERB tokens
lemmatised (except "left"); other words keep their form ("is" stays "is"). `process_spacy`
is that function verbatim for a loaded spaCy pipeline (lower-casing its output words for the
lower-case GloVe vocabulary).
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WORD_DIM: int = 300
MAX_TEXT_LEN: int = 20
"""Words kept per sentence (the original's `max_text_len`); sequences are MAX_TEXT_LEN + 2 long."""

POS_CATEGORIES: tuple[str, ...] = (
    "VERB", "NOUN", "DET", "ADP", "NUM", "AUX", "PRON", "ADJ", "ADV",
    "Loc_VIP", "Body_VIP", "Obj_VIP", "Act_VIP", "Desc_VIP", "OTHER",
)
POS_INDEX: dict[str, int] = {p: i for i, p in enumerate(POS_CATEGORIES)}
POS_DIM: int = len(POS_CATEGORIES)

# The original evaluator's VIP word lists (lemmas), kept verbatim.
VIP_WORDS: dict[str, frozenset[str]] = {
    "Loc_VIP": frozenset("left right clockwise counterclockwise anticlockwise forward back backward up down "
                         "straight curve".split()),
    "Body_VIP": frozenset("arm chin foot feet face hand mouth leg waist eye knee shoulder thigh".split()),
    "Obj_VIP": frozenset("stair dumbbell chair window floor car ball handrail baseball basketball".split()),
    "Act_VIP": frozenset("walk run swing pick bring kick put squat throw hop dance jump turn stumble stop sit "
                         "lift lower raise wash stand kneel stroll rub bend balance flap jog shuffle lean rotate "
                         "spin spread climb".split()),
    "Desc_VIP": frozenset("slowly carefully fast careful slow quickly happy angry sad happily angrily "
                          "sadly".split()),
}

_CLOSED: dict[str, str] = {}
for _tag, _words in {
    "DET": "a an the this that these those my your his her its our their some any each every all no both either "
           "neither another",
    "ADP": "in on at to from with by for of into onto over under through across around towards toward along "
           "behind near beside besides between off out about after before against without within upon past via "
           "inside outside underneath beneath above below beyond during until",
    "PRON": "i me you he him she it we us they them myself yourself himself herself itself ourselves themselves "
            "mine yours someone something everyone everything anyone anything nobody nothing who whom what which "
            "whose somebody",
    "AUX": "am is are was were be been being have has had do does did will would can could shall should may "
           "might must 'm 's 're 've 'll 'd",
    "NUM": "zero one two three four five six seven eight nine ten eleven twelve twenty thirty hundred",
    "ADV": "then again also very still just away together here there now once twice too quite almost already "
           "soon later around briefly gently slightly further nearby ahead aside instead maybe really",
    "OTHER": "and or but while as if because so not n't than though although whether when where how why",
}.items():
    _CLOSED.update({w: _tag for w in _words.split()})

_VERBS: frozenset[str] = frozenset(
    "walk turn look reach pick crouch open close hold grab take put place move step stand sit go come bend lean "
    "lift raise lower carry push pull wave point touch use glance scan check approach return stop start "
    "continue enter exit leave pass cross wash clean cook cut pour eat drink read write type talk say see "
    "watch search find get give make keep let run jog climb kneel squat rotate spin stretch adjust wipe fold "
    "drop throw catch kick jump follow prepare set hang shake nod tilt swing rub balance flap shuffle spread "
    "hop dance stumble stroll bring browse observe examine inspect arrange organize organise sort stir chop "
    "slice fill empty load unload unlock lock knock ring press tap scroll hug greet play bounce fetch tidy "
    "sweep mop dust vacuum iron dry hand".split()
)
_IRREGULAR: dict[str, str] = {
    "feet": "feet", "went": "go", "gone": "go", "took": "take", "taken": "take", "held": "hold", "stood": "stand",
    "sat": "sit", "came": "come", "ran": "run", "saw": "see", "seen": "see", "got": "get", "made": "make",
    "put": "put", "set": "set", "left": "left", "bent": "bend", "brought": "bring", "threw": "throw",
    "thrown": "throw", "knelt": "kneel", "leant": "lean", "hung": "hang", "kept": "keep", "found": "find",
    "gave": "give", "ate": "eat", "drank": "drink", "read": "read", "cut": "cut", "says": "say", "does": "do",
    "has": "have", "is": "be", "are": "be", "was": "be", "were": "be", "people": "person", "children": "child",
}
_ADJ_SUFFIXES: tuple[str, ...] = ("ful", "ous", "ive", "able", "ible", "ical", "less", "ish")
_SUFFIX_NOUNS: frozenset[str] = frozenset(
    "table cable vegetable timetable turntable worktable constable fable bible olive drive archive motive "
    "detective relative knive dish radish polish".split()
)
"""Nouns that end like adjectives (-able, -ive, -ish): the suffix rule skips them."""

_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+(?:\.\d+)?|n't|'[a-z]+")


def tokenize(text: str) -> list[str]:
    """Lower-case alphabetic word tokens as the original keeps them: hyphens removed first
    ("t-shirt" -> "tshirt"), contractions split and their non-alphabetic parts dropped
    ("don't" -> "do"; "I'm" -> "i"), digits and punctuation dropped."""
    words: list[str] = []
    for tok in _TOKEN.findall(text.lower().replace("-", "")):
        if tok.endswith("n't") and len(tok) > 3:
            tok = tok[:-3]
        elif "'" in tok[1:]:
            tok = tok.split("'", 1)[0]
        if tok.isalpha():
            words.append(tok)
    return words


def lemma(word: str) -> str:
    """Rule lemmatiser for English verbs and plural nouns (walks/walking/walked -> walk)."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word in _CLOSED or word in _VERBS or len(word) <= 3:
        return word
    for suffix in ("ing", "ed"):
        if word.endswith(suffix):
            stem = word[: -len(suffix)]
            for cand in (stem, stem + "e", stem[:-1] if len(stem) > 2 and stem[-1] == stem[-2] else None,
                         stem[:-1] + "y" if stem.endswith("i") else None):
                if cand and cand in _VERBS:
                    return cand
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


class LexiconTagger:
    """Offline rule/lexicon tagger -> (lemma, coarse tag) per token. See the module docstring."""

    name: str = "lexicon/2"

    def process(self, text: str) -> list[tuple[str, str]]:
        """(word, tag) per kept token, as the original's `process_text`: the lemma for NOUN and
        VERB tokens (except "left"), else the word itself."""
        words = tokenize(text)
        return [(lem if tag in ("NOUN", "VERB") and w != "left" else w, tag)
                for w, (lem, tag) in zip(words, self.tag(words))]

    def tag(self, words: list[str]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for i, w in enumerate(words):
            lem = lemma(w)
            if w in _CLOSED:
                tag = _CLOSED[w]
            elif re.fullmatch(r"\d+(?:\.\d+)?", w):
                tag = "NUM"
            elif lem in _VERBS:
                prev = out[-1][1] if out else None
                # "a turn", "the hand": a verb lemma right after a determiner is a noun.
                tag = "NOUN" if prev in ("DET", "ADJ") and not w.endswith(("ing", "ed")) else "VERB"
            elif w.endswith("ly") and len(w) > 4:
                tag = "ADV"
            elif w.endswith(_ADJ_SUFFIXES) and lem not in _SUFFIX_NOUNS:
                tag = "ADJ"
            elif w.endswith(("ing", "ed")) and len(w) > 5:
                tag = "VERB"
            else:
                tag = "NOUN"
            out.append((lem, tag))
        return out


def process_spacy(nlp, sentence: str) -> list[tuple[str, str]]:
    """The original `process_text` (HumanML3D text_process.py) for a loaded spaCy pipeline `nlp`
    (e.g. ``spacy.load("en_core_web_sm")``): (word, coarse POS) per alphabetic token, the lemma for
    NOUN/VERB tokens except "left"; words lower-cased for the GloVe vocabulary."""
    out = []
    for token in nlp(sentence.replace("-", "")):
        word = token.text
        if not word.isalpha():
            continue
        kept = token.lemma_ if token.pos_ in ("NOUN", "VERB") and word != "left" else word
        out.append((kept.lower(), token.pos_))
    return out


SPACY_DEFAULT_PIPELINE: str = "en_core_web_sm"
"""The original's spaCy pipeline; used by ``--tagger auto`` when it is installed."""


class SpacyTagger:
    """The original pipeline: a loaded spaCy `nlp` through `process_spacy`. `name` records the
    pipeline and its version (``spacy:en_core_web_sm-3.8.0``); `pipeline` is what `load` was given
    (an installed package name or a folder), stored with a trained evaluator to load it again."""

    def __init__(self, nlp, pipeline: str = SPACY_DEFAULT_PIPELINE):
        meta = getattr(nlp, "meta", {}) or {}
        self.nlp, self.pipeline = nlp, pipeline
        self.name = f"spacy:{meta.get('lang', 'xx')}_{meta.get('name', 'pipeline')}-{meta.get('version', '?')}"

    @classmethod
    def load(cls, pipeline: str = SPACY_DEFAULT_PIPELINE) -> "SpacyTagger":
        """`spacy.load(pipeline)` (a package name or a local folder); ImportError / OSError say what to install."""
        try:
            import spacy  # lazy: heavy optional dependency, only for the original tagging
        except ImportError:
            raise ImportError(f"spaCy is not installed: `pip install spacy` and the {pipeline!r} pipeline (a local "
                              "folder, or its package installed with `python -m spacy download en_core_web_sm` on a "
                              "machine with network), or use the built-in tagger (--tagger lexicon)") from None
        try:
            nlp = spacy.load(pipeline)
        except OSError as err:
            raise OSError(f"spaCy pipeline {pipeline!r} cannot be loaded ({err}); give an installed pipeline name or "
                          "its folder, or --tagger lexicon") from None
        return cls(nlp, pipeline)

    def process(self, text: str) -> list[tuple[str, str]]:
        return process_spacy(self.nlp, text)


def spacy_pipeline_installed(pipeline: str = SPACY_DEFAULT_PIPELINE) -> bool:
    """Whether spaCy and the pipeline package `pipeline` are importable here (no loading)."""
    return importlib.util.find_spec("spacy") is not None and importlib.util.find_spec(pipeline) is not None


def make_tagger(spec: str = "auto") -> "LexiconTagger | SpacyTagger":
    """``lexicon``: `LexiconTagger`; ``auto``: spaCy's en_core_web_sm when installed, else the
    lexicon tagger; anything else: a spaCy pipeline name or folder (`SpacyTagger.load`)."""
    if spec == "lexicon" or (spec == "auto" and not spacy_pipeline_installed()):
        return LexiconTagger()
    return SpacyTagger.load(SPACY_DEFAULT_PIPELINE if spec == "auto" else spec)


def pos_category(lemma_: str, tag: str) -> str:
    """The 15-way category of a token: its VIP list if any, else its tag (OTHER if not listed)."""
    for category, words in VIP_WORDS.items():
        if lemma_ in words:
            return category
    return tag if tag in POS_INDEX else "OTHER"


@dataclass
class WordVectors:
    """A GloVe vocabulary: `words` (V,) and float32 `vectors` (V, 300); `source` says where they came from."""

    words: list[str]
    vectors: np.ndarray
    source: str = "glove"

    def __post_init__(self) -> None:
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        if self.vectors.shape != (len(self.words), WORD_DIM):
            raise ValueError(f"GloVe vectors must be ({len(self.words)}, {WORD_DIM}), got {self.vectors.shape}")
        self.index = {w: i for i, w in enumerate(self.words)}

    def get(self, word: str) -> np.ndarray | None:
        i = self.index.get(word)
        return None if i is None else self.vectors[i]


def load_glove(path: str | Path, vocabulary: set[str] | None = None) -> WordVectors:
    """Load GloVe vectors from a local file, keeping only `vocabulary` (plus sos/eos/unk) if given.

    Accepts the standard text format (``word v1 .. v300`` per line, e.g. glove.6B.300d.txt,
    optionally .gz) or the folder of the public text-to-motion code (`our_vab_data.npy`,
    `our_vab_words.pkl`). Raises FileNotFoundError naming the file and where to get it.
    """
    path = Path(path).expanduser()
    keep = None if vocabulary is None else set(vocabulary) | {"sos", "eos", "unk"}
    if path.is_dir():
        data, words_file = path / "our_vab_data.npy", path / "our_vab_words.pkl"
        if not data.is_file() or not words_file.is_file():
            raise FileNotFoundError(f"{path} holds neither our_vab_data.npy nor our_vab_words.pkl (the text-to-motion "
                                    "GloVe folder); pass a GloVe text file such as glove.6B.300d.txt instead")
        vectors = np.load(data)
        with open(words_file, "rb") as fh:
            words = list(pickle.load(fh))
        sel = [i for i, w in enumerate(words) if keep is None or w in keep]
        return WordVectors([words[i] for i in sel], vectors[sel], f"glove:{path.name}")
    if not path.is_file():
        raise FileNotFoundError(
            f"GloVe file {path} not found. Download glove.6B.zip from https://nlp.stanford.edu/projects/glove/ "
            "and pass glove.6B.300d.txt (or the text-to-motion 'glove' folder) with --glove."
        )
    words, rows = [], []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf8") as fh:
        for line_no, line in enumerate(fh, 1):
            word, _, rest = line.rstrip("\n").partition(" ")
            if keep is not None and word not in keep:
                continue
            vec = np.array(rest.split(" "), dtype=np.float32)
            if vec.shape != (WORD_DIM,):
                raise ValueError(f"{path}:{line_no}: expected {WORD_DIM} numbers after the word, got {vec.size}")
            words.append(word)
            rows.append(vec)
    if not words:
        raise ValueError(f"{path}: no word vectors read (empty file, or no word of the vocabulary in it)")
    return WordVectors(words, np.stack(rows), f"glove:{path.name}")


def random_word_vectors(words: set[str], seed: int = 0) -> WordVectors:
    """Random unit-variance 300-d vectors for `words` (+ sos/eos/unk): a stand-in for GloVe.

    Only for closed vocabularies such as the synthetic narrations (the demo): near-orthogonal random
    vectors act as one-hot words, so the evaluators still learn, but synonyms are not close and the
    scores are not comparable with GloVe-based evaluators. `source` records it.
    """
    rng = np.random.default_rng(seed)
    vocab = sorted(set(words) | {"sos", "eos", "unk"})
    return WordVectors(vocab, rng.standard_normal((len(vocab), WORD_DIM)), f"random(seed={seed})")


class WordVectorizer:
    """Sentence -> (word vectors (L, 300), POS one-hots (L, 15), length), L = max_len + 2."""

    def __init__(self, vectors: WordVectors, tagger: "LexiconTagger | SpacyTagger | None" = None,
                 max_len: int = MAX_TEXT_LEN):
        self.vectors, self.tagger, self.max_len = vectors, tagger or LexiconTagger(), max_len
        self._unk = self._vector("unk")

    def _vector(self, word: str) -> np.ndarray:
        v = self.vectors.get(word)
        return np.zeros(WORD_DIM, np.float32) if v is None else v

    def tokens(self, text: str) -> list[tuple[str, str]]:
        """(word, category) pairs of the sentence, sos/eos included, not padded: as the original
        `WordVectorizer`, a word in the vocabulary gets its VIP category or its tag, any other unk/OTHER."""
        body = [(w, pos_category(w, tag)) if w in self.vectors.index else ("unk", "OTHER")
                for w, tag in self.tagger.process(text)]
        return [("sos", "OTHER")] + body[: self.max_len] + [("eos", "OTHER")]

    def __call__(self, text: str) -> tuple[np.ndarray, np.ndarray, int]:
        toks = self.tokens(text)
        length = len(toks)
        toks += [("unk", "OTHER")] * (self.max_len + 2 - length)
        words = np.stack([self._vector(w) if w != "unk" else self._unk for w, _ in toks])
        pos = np.zeros((len(toks), POS_DIM), np.float32)
        pos[np.arange(len(toks)), [POS_INDEX[c] for _, c in toks]] = 1.0
        return words, pos, length

    def batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, L, 300), (B, L, 15), (B,) int64 lengths."""
        items = [self(t) for t in texts]
        return (np.stack([i[0] for i in items]), np.stack([i[1] for i in items]),
                np.array([i[2] for i in items], dtype=np.int64))


def vocabulary(texts: list[str], tagger: "LexiconTagger | SpacyTagger | None" = None) -> set[str]:
    """Every word form and lemma the texts use (what `load_glove` needs to keep)."""
    tagger = tagger or LexiconTagger()
    out: set[str] = set()
    for t in texts:
        out.update(w for w, _ in tagger.process(t))
    return out
