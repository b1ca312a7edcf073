"""Indonesian personal names, normalised for matching.

The same person is written "Hj. Siti Aminah binti Abdullah", "SITI AMINAH", "Siti Aminah, S.Pd."
or, as a newborn, "By. Ny. Siti Aminah" (the baby of Mrs Siti Aminah). :func:`parse_name`
reduces a name to comparable tokens: lower case without accents or punctuation; titles and
forms of address (H., Hj., dr., Ir., Prof., Ny., Tn., Bapak ...) and academic degrees
(S.Pd., S.Kom, M.Kes ...) dropped; ``bin``/``binti`` splitting off the father's name; the 20-odd
spellings and abbreviations of Muhammad (and of a few other very common Arabic names) mapped to
one token; the pre-1972 spellings (Soewandi ``oe``, ``dj``, ``tj``, ``sj``, ``nj``, ``ch``)
rewritten in the modern ones. A newborn's placeholder name is recognised and flagged, and what
follows it is the *mother's* name, never the child's.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

#: titles, honorifics and forms of address (lower case, without the dot)
TITLES = frozenset(
    {
        "h", "hj", "haji", "hajjah", "hajah", "dr", "drs", "dra", "drg", "ir", "prof", "ny", "nyonya", "tn", "tuan",
        "nn", "nona", "sdr", "sdri", "sdra", "bpk", "bapak", "pak", "ibu", "bu", "an", "anak", "ust", "ustad", "ustadz",
        "ustadzah", "kh", "ns", "ners", "apt", "bd", "bidan", "almarhum", "alm", "almh", "almarhumah", "kyai", "kiai",
    }
)  # fmt: skip
#: academic degrees written without inner dots (those with dots, like s.pd or m.kes, are found by shape)
DEGREES = frozenset(
    {
        "skm", "sked", "spd", "skom", "sh", "se", "st", "ssi", "ssos", "sag", "spdi", "sfarm", "skep", "sgz", "amd", "amk",
        "amkeb", "mm", "mkes", "mpd", "msi", "mh", "mt", "mkom", "mba", "phd", "sppd", "spog", "spa", "spb",
    }
)  # fmt: skip
#: Arabic "son of" / "daughter of": what follows is the father's name
PATRONYMIC = frozenset({"bin", "binti", "binte", "bte", "bt", "b"})
#: the first words of a newborn's placeholder name ("By. Ny. X", "Bayi Ny. X", "Bayi Nyonya X")
_NEWBORN_FIRST = frozenset({"by", "bayi", "bi"})
_NEWBORN_SECOND = frozenset({"ny", "nyonya", "ibu"})

MUHAMMAD = "muhammad"
#: spellings and abbreviations of one name, to its canonical token
CANONICAL = {
    **dict.fromkeys(
        (
            "muhamad", "muhammad", "mohamad", "mohammad", "mohamed", "mohammed", "muhammed", "muhamed", "mochamad",
            "mochammad", "mokhamad", "mokhammad", "mukhamad", "mukhammad", "moehamad", "moehammad", "muchamad",
            "muchammad", "mohamat", "muhamat", "mahmad", "moh", "moch", "mokh", "muh", "much", "mukh", "mhd", "mohd",
            "md", "mch", "muhd", "mhmd", "m",
        ),
        MUHAMMAD,
    ),
    **dict.fromkeys(("ahmad", "achmad", "akhmad", "ahmat", "achmat", "akhmat", "amad"), "ahmad"),
    **dict.fromkeys(("abd", "abdul", "abdoel", "abdol"), "abdul"),
    **dict.fromkeys(("nur", "noor", "nor", "nour"), "nur"),
    **dict.fromkeys(("siti", "sitti", "st"), "siti"),
    **dict.fromkeys(("yusuf", "jusuf", "yosef", "yusup", "jusup"), "yusuf"),
    **dict.fromkeys(("abdullah", "abdulah", "abdollah"), "abdullah"),
    **dict.fromkeys(("rahman", "rachman", "rakhman"), "rahman"),
}  # fmt: skip

# Soewandi (1947) and EYD (1972) spelling reforms. The old "j" was today's "y" (Soejono ->
# Suyono), but a plain "j" is also today's "j" (Joko): it is rewritten only in a token that shows
# an old digraph, and after "dj" has become a (protected) "j".
_OLD_DIGRAPHS = (("oe", "u"), ("dj", "J"), ("tj", "c"), ("sj", "sy"), ("nj", "ny"), ("ch", "kh"))
_DEGREE_SHAPE = re.compile(r"^[a-z]{1,4}\.[a-z]{1,5}(\.[a-z]{1,5})*\.?$")
_GLUED_ABBREVIATION = re.compile(r"^(m|mh|moh|moch|muh|much|mhd|mohd|abd|h|hj|dr|ir|ny|tn|by)\.([a-z]{2,}.*)$")
_SPLIT = re.compile(r"[\s,;/()\[\]\"'`_-]+")


@dataclass(frozen=True, slots=True)
class ParsedName:
    """A name reduced for matching."""

    #: the person's own name tokens, in written order (a newborn placeholder: the mother's)
    tokens: tuple[str, ...]
    #: the father's name after bin/binti (empty when not given)
    father: tuple[str, ...] = ()
    #: "By. Ny. X": a newborn not yet named; ``tokens`` are the mother's name
    newborn: bool = False
    #: a title or honorific was written (Hj., dr., ...): kept only as a fact, not compared
    titled: bool = False

    @property
    def key(self) -> str:
        """The tokens sorted and joined: the same for the same name in any order."""
        return " ".join(sorted(self.tokens))

    @property
    def distinctive(self) -> tuple[str, ...]:
        """Tokens without the ubiquitous Muhammad (kept when it is the whole name)."""
        rest = tuple(t for t in self.tokens if t != MUHAMMAD)
        return rest or self.tokens


def fold(text: str) -> str:
    """Lower case without diacritics (NFKD, combining marks dropped)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


@lru_cache(maxsize=65536)
def modern_spelling(token: str) -> str:
    """A token in today's spelling (Soeharto -> suharto, Djoko -> joko, Tjipto -> cipto)."""
    if not any(old in token for old, _ in _OLD_DIGRAPHS):
        return token
    for old, new in _OLD_DIGRAPHS:
        token = token.replace(old, new)
    return token.replace("j", "y").replace("J", "j")


def canonical_token(token: str) -> str:
    """One token for every spelling of the same name (Moch., Mohammad -> muhammad)."""
    if token in CANONICAL:
        return CANONICAL[token]
    modern = modern_spelling(token)
    return CANONICAL.get(modern, modern)


@lru_cache(maxsize=65536)
def parse_name(text: str) -> ParsedName:
    """Normalise one written name (see the module docstring)."""
    raw = [t for t in _SPLIT.split(fold(text)) if t]
    words: list[str] = []
    for word in raw:
        dotted = "." in word.strip(".") and (word.replace(".", "") in DEGREES or not _GLUED_ABBREVIATION.match(word))
        if dotted and _DEGREE_SHAPE.match(word):  # S.Pd., M.Kes, A.Md., S.H.: a degree, never a name
            words.append(".degree")
            continue
        glued = _GLUED_ABBREVIATION.match(word)
        if glued:  # "M.Rizki", "Hj.Siti": an abbreviation glued to the next word
            words.extend((glued.group(1) + ".", glued.group(2)))
        else:
            words.append(word)

    newborn = False
    bare = [w.strip(".") for w in words]
    if len(bare) >= 2 and bare[0] in _NEWBORN_FIRST and bare[1] in _NEWBORN_SECOND:
        newborn, words = True, words[2:]
    elif bare and bare[0] == "bayi":
        newborn, words = True, words[1:]

    tokens: list[str] = []
    father: list[str] = []
    titled = False
    target = tokens
    for position, word in enumerate(words):
        if word == ".degree":
            titled = True
            continue
        bare_word = re.sub(r"[^a-z]", "", word)
        if not bare_word:
            continue
        if bare_word in TITLES or (bare_word in DEGREES and position > 0):
            titled = True
            continue
        # a bare "b" is an initial, "b." is bin
        patronymic = bare_word in PATRONYMIC and (bare_word != "b" or word.endswith("."))
        if patronymic and target is tokens and tokens and position < len(words) - 1:
            target = father
            continue
        if len(bare_word) == 1 and bare_word != "m":
            continue  # other initials carry too little to compare
        if bare_word == "m" and position == len(words) - 1:
            continue
        target.append(canonical_token(bare_word))
    return ParsedName(tuple(tokens), tuple(father), newborn, titled)
