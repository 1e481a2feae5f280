#!/usr/bin/env python3
"""Transcripts and the held-out test split of the default corpus (called by launch/prepare-corpus.sh).

    fillets-transcripts.py PREPARED_DIR MANIFEST_DIR [GAME_DIR (default /usr/share/games/fillets-ng)]

Reads PREPARED_DIR/train.tsv and valid.tsv as `w2vbert prepare` wrote them (rows under a root folder of
links to the game's sound/P/LANG folders) and writes MANIFEST_DIR/{train,valid,test}.tsv, the test rows
moved out of the other two, and NAME.wrd beside each NAME.tsv: one line per row, in the same order, the
line spoken (empty: none known). The files are checked before they replace the old ones.

Transcripts: the sound file sound/P/LANG/ID.ogg speaks the dialogStr("...") that follows dialogId("ID", ...)
in the game's Lua dialog files for P: script/P/*dialogs_LANG.lua for a level P, and for the shared folders
sound/share/NAME the files the game loads for them (SHARED below). Lua string escapes are decoded; whitespace
runs (newlines included) become one space; the text is otherwise kept as written (UTF-8). A line with a
%N placeholder is a template (the game splices in a number that other files speak): such a file is unlabelled.

Test rule (fixed, independent of prepare's seed and valid split): a labelled file is a test file iff the
SHA-256 of its normalised line (lowercase, letters and digits only, words joined by single spaces), read
as a big-endian number, is 0 modulo 10, so every copy of a sentence lands on the same side. Unlabelled files stay in train/valid.
Checked before writing: every .wrd has one line per row; every test row is labelled, and neither its path,
its normalised line nor its audio bytes occur in train/valid.
Exit status: 0 ok, 1 a file missing or unparseable (named), 2 usage.
"""
import glob
import hashlib
import os
import re
import sys

# sound/share/NAME/LANG ← script/share/PREFIX_dialogs_LANG.lua, as the game's dialogLoad calls pair them.
SHARED = {"blackjokes": ["black"], "borejokes": ["bore"], "border": ["border", "shout"]}
SPLITS = ("train", "valid", "test")
TOKEN = re.compile(rb"""
    (?P<space>\s+)
  | (?P<comment>--\[(?P<ceq>=*)\[.*?\](?P=ceq)\]|--[^\n]*)
  | (?P<long>\[(?P<leq>=*)\[.*?\](?P=leq)\])
  | (?P<string>"(?:[^"\\\n]|\\.|\\\n)*"|'(?:[^'\\\n]|\\.|\\\n)*')
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<punct>\.\.|[(),;])
""", re.X | re.S)
ESCAPES = {b"a": b"\a", b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v",
           b"\\": b"\\", b'"': b'"', b"'": b"'", b"\n": b"\n"}
ESCAPE = re.compile(rb"\\(\d{1,3}|x[0-9A-Fa-f]{2}|u\{[0-9A-Fa-f]+\}|z\s*|.)", re.S)


class Failure(Exception):
    """A problem with an input file; the message names it."""


def unescape(body, where):
    """The bytes of a quoted Lua string's body with its escapes decoded."""
    def one(m):
        e = m.group(1)
        if e[:1].isdigit():
            if int(e) > 255:
                raise Failure(f"{where}: escape \\{e.decode()} out of range")
            return bytes([int(e)])
        if e[:1] == b"x":
            return bytes([int(e[1:], 16)])
        if e[:2] == b"u{":
            return chr(int(e[2:-1], 16)).encode()
        if e[:1] == b"z":
            return b""
        if e not in ESCAPES:
            raise Failure(f"{where}: unknown escape \\{e.decode(errors='replace')}")
        return ESCAPES[e]
    return ESCAPE.sub(one, body)


def tokens(path):
    """(kind, value, line) of a Lua file's tokens; strings come decoded (str)."""
    try:
        data = open(path, "rb").read()
    except OSError as e:
        raise Failure(f"{path}: cannot read ({e.strerror})")
    pos, line = 0, 1
    while pos < len(data):
        m = TOKEN.match(data, pos)
        if not m:
            raise Failure(f"{path}:{line}: unexpected {data[pos:pos + 20]!r}")
        kind, text = m.lastgroup, m.group(m.lastgroup)   # the outer group: nested ones close first
        where = f"{path}:{line}"
        if kind == "string":
            value = unescape(text[1:-1], where)
        elif kind == "long":   # [==[body]==]: no escapes, a first newline dropped
            level = len(m.group("leq"))
            value = text[level + 2:len(text) - level - 2]
            value = value[1:] if value.startswith(b"\n") else value
        if kind in ("string", "long"):
            try:
                yield "string", value.decode("utf-8"), line
            except UnicodeDecodeError:
                raise Failure(f"{where}: string is not UTF-8")
        elif kind in ("name", "punct"):
            yield kind, text.decode(), line
        line += text.count(b"\n")
        pos = m.end()


def parse_calls(path):
    """The file's statements, each NAME(STRING[..STRING], ...) [;], as (name, [arguments], line)."""
    toks = list(tokens(path))
    toks.append(("end", "end of file", toks[-1][2] if toks else 1))
    i, calls = 0, []

    def expect(kind, value=None):
        nonlocal i
        k, v, line = toks[i]
        if k != kind or (value is not None and v != value):
            raise Failure(f"{path}:{line}: expected {repr(value) if value else kind}, found {v!r}")
        i += 1
        return v

    while toks[i][0] != "end":
        line = toks[i][2]
        name, args = expect("name"), []
        expect("punct", "(")
        while toks[i][1] != ")" or toks[i][0] != "punct":
            if args:
                expect("punct", ",")
            arg = expect("string")
            while toks[i][:2] == ("punct", ".."):
                i += 1
                arg += expect("string")
            args.append(arg)
        i += 1
        if toks[i][:2] == ("punct", ";"):
            i += 1
        calls.append((name, args, line))
    return calls


def dialog_lines(path):
    """ID → spoken line of one dialog file (dialogId(ID, ...) followed by dialogStr(LINE))."""
    lines, current = {}, None
    for name, args, line in parse_calls(path):
        if name == "dialogId" and args:
            current = args[0]
        elif name == "dialogStr" and len(args) == 1 and current is not None:
            text = " ".join(args[0].split())
            if lines.get(current, text) != text:
                raise Failure(f"{path}:{line}: a second, different line for {current!r}")
            lines[current] = text
            current = None
        else:
            raise Failure(f"{path}:{line}: unexpected {name}() with {len(args)} argument(s)")
    return lines


def folder_lines(game, folder, lang, cache):
    """ID → line for the sound folder sound/FOLDER/LANG (all of its dialog files)."""
    key = (folder, lang)
    if key not in cache:
        parts = folder.split("/")
        if len(parts) == 2 and parts[0] == "share" and parts[1] in SHARED:
            files = [f"{game}/script/share/{p}_dialogs_{lang}.lua" for p in SHARED[parts[1]]]
        else:
            files = sorted(glob.glob(f"{game}/script/{glob.escape(folder)}/*dialogs_{lang}.lua"))
            if not files:
                files = [f"{game}/script/{folder}/dialogs_{lang}.lua"]   # reported missing below
        table = {}
        for f in files:
            if not os.path.isfile(f):
                raise Failure(f"{f}: missing (dialog file for sound/{folder}/{lang})")
            for ident, text in dialog_lines(f).items():
                if table.get(ident, text) != text:
                    raise Failure(f"{f}: {ident!r} has a different line in another dialog file of {folder}")
                table[ident] = text
        cache[key] = table
    return cache[key]


def read_manifest(path):
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise Failure(f"{path}: cannot read ({e.strerror})")
    if not lines:
        raise Failure(f"{path}: empty manifest (no root line)")
    rows = []
    for n, text in enumerate(lines[1:], start=2):
        cols = text.split("\t")
        if len(cols) < 2 or not cols[1].isdigit():
            raise Failure(f"{path}:{n}: expected relative/path<TAB>num_samples")
        rows.append(cols)
    return lines[0], rows


def label(game, root, rel, cache):
    """The line spoken in ROOT/REL ("" when none is known)."""
    real = os.path.realpath(os.path.join(root, rel))
    sound = os.path.realpath(os.path.join(game, "sound"))
    folder, name = os.path.split(os.path.relpath(real, sound))
    folder, lang = os.path.split(folder)
    if folder.startswith("..") or not folder or not name.endswith(".ogg"):
        raise Failure(f"{os.path.join(root, rel)}: not a sound file of {sound}/LEVEL/LANG")
    return folder_lines(game, folder, lang, cache).get(name[:-len(".ogg")], "")


def spoken(text):
    """The line as the file speaks it: "" for a template whose %N part another file speaks."""
    return "" if re.search(r"%\d", text) else text


def test_key(text):
    """The normalised line whose hash decides the test split."""
    return " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def is_test(text):
    return int(hashlib.sha256(test_key(text).encode()).hexdigest(), 16) % 10 == 0


def write(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def check(out, root, suffix=""):
    """The invariants, read back from the written files: one .wrd line per row, test held out."""
    seen = {}
    for name in SPLITS:
        tsv, wrd = f"{out}/{name}.tsv{suffix}", f"{out}/{name}.wrd{suffix}"
        got_root, rows = read_manifest(tsv)
        with open(wrd, encoding="utf-8") as f:
            words = f.read().split("\n")[:-1]
        if got_root != root or len(words) != len(rows):
            raise Failure(f"{wrd}: {len(words)} lines for the {len(rows)} rows of {tsv} (root {got_root})")
        seen[name] = list(zip((r[0] for r in rows), words))
    held = seen.pop("test")
    rest = [row for rows in seen.values() for row in rows]
    paths = {p for p, _ in rest}
    texts = {test_key(w) for _, w in rest if w}
    audio = {digest(root, p) for p in paths}
    for p, w in held:
        problem = ("is unlabelled" if not w else "is also in train/valid" if p in paths
                   else "has its line in train/valid too" if test_key(w) in texts
                   else "has a byte-identical copy in train/valid" if digest(root, p) in audio else None)
        if problem:
            raise Failure(f"{out}/test.tsv{suffix}: {p} ({w!r}) {problem}")


def digest(root, rel):
    with open(os.path.join(root, rel), "rb") as f:
        return hashlib.sha256(f.read()).digest()


def hours(rows):
    return sum(int(cols[1]) for cols, _ in rows) / 16000 / 3600


def split(prepared, game):
    """The rows of PREPARED/{train,valid}.tsv as (root, {split: [(columns, line)]})."""
    root, train = read_manifest(f"{prepared}/train.tsv")
    valid_root, valid = read_manifest(f"{prepared}/valid.tsv")
    if valid_root != root:
        raise Failure(f"{prepared}/valid.tsv: root {valid_root} differs from train.tsv's {root}")
    cache = {}
    splits = {name: [] for name in SPLITS}
    for name, rows in (("train", train), ("valid", valid)):
        for cols in rows:
            text = spoken(label(game, root, cols[0], cache))
            splits["test" if text and is_test(text) else name].append((cols, text))
    splits["test"].sort()
    return root, splits


def main(argv):
    if len(argv) not in (3, 4):
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    prepared, out = argv[1], argv[2]
    game = argv[3] if len(argv) == 4 else "/usr/share/games/fillets-ng"
    root, splits = split(prepared, game)
    os.makedirs(out, exist_ok=True)
    files = [f"{out}/{name}.{ext}" for name in SPLITS for ext in ("tsv", "wrd")]
    try:   # written aside, checked, then moved into place
        for name, rows in splits.items():
            write(f"{out}/{name}.tsv.tmp", [root] + ["\t".join(cols) for cols, _ in rows])
            write(f"{out}/{name}.wrd.tmp", [text for _, text in rows])
        check(out, root, ".tmp")
        for f in files:
            os.replace(f + ".tmp", f)
    finally:
        for f in files:
            if os.path.exists(f + ".tmp"):
                os.remove(f + ".tmp")
    every = [r for rows in splits.values() for r in rows]
    print(f"transcripts: {len(every)} files, {hours(every):.3f} h; {sum(1 for _, t in every if t)} labelled")
    for name, rows in splits.items():
        print(f"  {name}: {len(rows)} files ({sum(1 for _, t in rows if t)} labelled), {hours(rows):.3f} h")
    print(f"  wrote {out}/{{{','.join(SPLITS)}}}.{{tsv,wrd}}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Failure as e:
        print(f"fillets-transcripts: {e}", file=sys.stderr)
        sys.exit(1)
