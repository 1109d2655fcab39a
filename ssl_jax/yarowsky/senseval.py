"""Reader of the Senseval `line`, `hard`, `serve`, `interest` corpora (NLTK's XML version).

`data_dir/senseval.zip` holds `senseval/{hard,interest,line,serve}.pos`, read
straight from the archive:

    <instance id="line-n.w7_010:888:">
    <answer instance="line-n.w7_010:888:" senseid="cord"/>
    <context> <wf pos="DT">the</wf> ... <head> <wf pos="NNS">lines</wf></head> ... </context>
    </instance>

Tokens are the `<wf>` texts in document order (also those inside `<compound>`;
`<s snum=.../>` sentence marks are skipped); the target is the one `<wf>` inside
`<head>`. A bare `&` (not starting an entity) is escaped before parsing, since
older releases of these files have them; any other malformed content raises
`DataError` naming the file and, where it is about one instance, the instance.

Several answers: an instance keeps every `senseid` of its `<answer>` elements in
file order (`Instance.senses`); training uses the first (`Instance.sense`), and a
prediction counts as correct when it is any of them. In these four files every
instance has exactly one answer, so the choice changes no number.

Discourses (for one-sense-per-discourse and for splitting train / test by
document): no file marks article boundaries. Where an instance id names its
source file and a position in it, occurrences of the same file whose positions
lie at most `discourse_gap` apart are chained into one discourse:

    line   `w7_010:888:`             WSJ file w7_010, position 888
           `art} aphb 04400788:`     AP file aphb_044, position 788
    serve  `aphb_51905969_4083`      AP file aphb_519, position 5969 (the last
           `w7_0011074_5`            number counts instances); WSJ file w7_001,
                                     position 1074

Every other instance is a discourse of its own. That is all of `interest`
(ids `int1` ... `int2368` carry no source) and all of `hard`: its ids
(`sjm-274_1:`, `br-a06:`) name a source file and an occurrence counter but no
position, and a whole file mixes many articles (sense agreement with the file's
majority 83%, against 80% for the corpus-wide majority sense). For `line` and
`serve`, consecutive occurrences of one file (by position) share their sense
96-100% of the time when at most 10 positions apart, 85-89% at 11 to 50, and
37-39% beyond 200 (WSJ files of `line`; AP files likewise): this measurement,
made once on all the labels of both corpora (test split included), is the
evidence for the chaining and for the default `discourse_gap` of 10. It is a
property of the corpus format, not tuned on any accuracy. With gap 10, `line`
has 3,608 discourses for 4,146 instances and `serve` 3,576 for 4,378.
"""

import collections
import dataclasses
import pathlib
import re
import xml.etree.ElementTree as ET
import zipfile

from ssl_jax.data.formats import DataError

ARCHIVE = "senseval.zip"
WORDS = ("hard", "interest", "line", "serve")
# The sense inventory of each word (the `senseid`s of its file), for config checks.
SENSES = {
    "hard": ("HARD1", "HARD2", "HARD3"),
    "interest": ("interest_1", "interest_2", "interest_3", "interest_4", "interest_5",
                 "interest_6"),
    "line": ("cord", "division", "formation", "phone", "product", "text"),
    "serve": ("SERVE10", "SERVE12", "SERVE2", "SERVE6"),
}
# Instance ids (after `<word>-<pos>.`) that name a source file and a position in it.
_POSITIONED_IDS = (
    re.compile(r"(?P<corpus>w\d)_(?P<file>\d+):(?P<position>\d+):"),
    re.compile(r"(?:\w*\} )?(?P<corpus>aphb) (?P<file>\d{3})(?P<position>\d+):"),
    re.compile(r"(?P<corpus>aphb|w7)_(?P<file>\d{3})(?P<position>\d+)_\d+", re.IGNORECASE),
)
_BARE_AMPERSAND = re.compile(rb"&(?!(?:[A-Za-z]+|#\d+|#x[0-9A-Fa-f]+);)")


@dataclasses.dataclass(frozen=True)
class Instance:
    """One occurrence of the ambiguous word: `tokens[head]` is the word itself."""
    id: str
    word: str
    senses: tuple[str, ...]
    tokens: tuple[str, ...]
    head: int
    discourse: str

    @property
    def sense(self) -> str:
        """The training label: the first answer."""
        return self.senses[0]


def archive_path(data_dir: str | pathlib.Path) -> pathlib.Path:
    return pathlib.Path(data_dir) / ARCHIVE


def _source_position(instance_id: str) -> tuple[str, int] | None:
    """(source file, position) for the ids that name both, else None."""
    local = instance_id.split(".", 1)[-1]
    for pattern in _POSITIONED_IDS:
        match = pattern.fullmatch(local)
        if match:
            source = f"{match['corpus'].lower()}_{match['file']}"
            return source, int(match["position"])
    return None


def discourse_ids(instance_ids: list[str], gap: int) -> list[str]:
    """The discourse of each id: `source@first_position` of its chain of same-file
    occurrences at most `gap` positions apart, or the id itself (see module doc)."""
    by_source = collections.defaultdict(list)
    for index, instance_id in enumerate(instance_ids):
        located = _source_position(instance_id)
        if located:
            by_source[located[0]].append((located[1], index))
    discourse = list(instance_ids)
    for source, occurrences in by_source.items():
        occurrences.sort()
        start = previous = occurrences[0][0]
        for position, index in occurrences:
            if position - previous > gap:
                start = position
            discourse[index] = f"{source}@{start}"
            previous = position
    return discourse


def _tokens_and_head(context: ET.Element, where: str) -> tuple[tuple[str, ...], int]:
    tokens, head = [], None
    for element in context.iter():
        if element.tag == "head":
            targets = list(element.iter("wf"))
            if head is not None or len(targets) != 1:
                raise DataError(f"{where}: expected one <head> holding one <wf>")
            head = len(tokens)
            if not (targets[0].text or "").strip():
                raise DataError(f"{where}: the <head> word is empty")
        elif element.tag == "wf":
            text = (element.text or "").strip()
            if text:
                tokens.append(text)
    if head is None:
        raise DataError(f"{where}: no <head> in <context>")
    return tuple(tokens), head


def parse(content: bytes, name: str, word: str, discourse_gap: int) -> list[Instance]:
    """The instances of one `.pos` file's bytes; `name` is used in error messages."""
    try:
        root = ET.fromstring(_BARE_AMPERSAND.sub(b"&amp;", content))
    except ET.ParseError as error:
        line, column = error.position
        raise DataError(f"{name}: not well-formed XML at line {line}, column {column}: "
                        f"{error}") from None
    parsed = []
    for number, element in enumerate(root.iter("instance"), 1):
        instance_id = element.get("id")
        if not instance_id:
            raise DataError(f"{name}, instance #{number}: no id attribute")
        where = f"{name}, instance {instance_id!r}"
        senses = tuple(answer.get("senseid") or "" for answer in element.iter("answer"))
        if not senses or not all(senses):
            raise DataError(f"{where}: needs at least one <answer senseid=...>")
        context = element.find("context")
        if context is None:
            raise DataError(f"{where}: no <context>")
        tokens, head = _tokens_and_head(context, where)
        parsed.append((instance_id, senses, tokens, head))
    if not parsed:
        raise DataError(f"{name}: no <instance> elements")
    discourses = discourse_ids([p[0] for p in parsed], discourse_gap)
    return [Instance(id=i, word=word, senses=s, tokens=t, head=h, discourse=d)
            for (i, s, t, h), d in zip(parsed, discourses)]


def load(data_dir: str | pathlib.Path, word: str, discourse_gap: int = 10) -> list[Instance]:
    """Every instance of `word` (one of `WORDS`) from `data_dir/senseval.zip`."""
    if word not in WORDS:
        raise ValueError(f"unknown Senseval word {word!r}: expected one of {WORDS}")
    path = archive_path(data_dir)
    member = f"senseval/{word}.pos"
    try:
        with zipfile.ZipFile(path) as archive:
            content = archive.read(member)
    except KeyError:
        raise DataError(f"{path}: no member {member}") from None
    except zipfile.BadZipFile as error:
        raise DataError(f"{path}: {error}") from None
    return parse(content, f"{path}:{member}", word, discourse_gap)

