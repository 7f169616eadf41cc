# ruff: noqa: E501, RUF001 - templates read best on one line; the math symbols are data
"""Write ``features_train.csv``: labelled inputs the ``features`` gate learns from.

Labels: ``byt5`` for what a byte-level model is for (short code, identifiers, symbol-heavy text,
error messages, log lines, byte-level jobs such as reversing or re-casing a string, binary junk,
short questions) and ``longformer`` for long prose documents (reports, contracts, articles,
minutes, papers, stories, several paragraphs long). Rows come from many templates filled with
random names, numbers and sentences, so no two are alike; the held-out set the benchmark scores
(``features_heldout.csv``) was written separately, by hand, and shares no template with this.

Run: ``python make_features_data.py [--seed 7] [--out features_train.csv]``.
"""

from __future__ import annotations

import argparse
import csv
import random
import string
from pathlib import Path

NOUNS = [
    "user",
    "order",
    "invoice",
    "session",
    "token",
    "cache",
    "queue",
    "worker",
    "payload",
    "config",
    "record",
    "account",
    "item",
    "buffer",
    "socket",
    "request",
    "response",
    "handler",
    "parser",
    "schema",
    "client",
    "server",
    "event",
    "message",
    "file",
    "report",
    "metric",
    "batch",
    "node",
    "cluster",
    "job",
    "task",
    "price",
    "customer",
    "product",
    "widget",
    "stream",
    "index",
]
VERBS = [
    "get",
    "set",
    "load",
    "save",
    "parse",
    "build",
    "fetch",
    "send",
    "read",
    "write",
    "update",
    "delete",
    "compute",
    "render",
]
LANGS = ("python", "js", "sql", "shell", "regex", "css", "html", "json", "yaml", "c", "rust", "go")


def ident(rng: random.Random, style: str | None = None) -> str:
    parts = [rng.choice(VERBS), *rng.sample(NOUNS, rng.randint(1, 2))]
    style = style or rng.choice(("snake", "camel", "pascal", "const", "kebab"))
    if style == "snake":
        return "_".join(parts)
    if style == "camel":
        return parts[0] + "".join(p.title() for p in parts[1:])
    if style == "pascal":
        return "".join(p.title() for p in parts)
    if style == "const":
        return "_".join(parts).upper()
    return "-".join(parts)


def code(rng: random.Random) -> str:
    lang = rng.choice(LANGS)
    a, b, c = ident(rng, "snake"), ident(rng, "camel"), rng.choice(NOUNS)
    n = rng.randint(0, 999)
    snippets = {
        "python": [
            f"def {a}({c}, limit={n}):\n    return [x for x in {c} if x.{rng.choice(NOUNS)} < limit]",
            f"for i, {c} in enumerate({a}()):\n    print(f'{{i}}: {{{c}!r}}')",
            f"class {ident(rng, 'pascal')}:\n    def __init__(self):\n        self.{c}s = {{}}",
            f"with open('{c}.txt') as f:\n    data = [line.strip() for line in f]",
            f"import {rng.choice(['os', 'sys', 'json', 're'])}\n{a} = {{k: v for k, v in {c}.items() if v}}",
        ],
        "js": [
            f"const {b} = ({c}) => {c}.filter(x => x.id !== {n});",
            f"async function {b}() {{\n  const res = await fetch('/api/{c}s/{n}');\n  return res.json();\n}}",
            f"document.querySelector('#{c}').addEventListener('click', e => {b}(e.target));",
            f"let {b} = {c}s.reduce((acc, x) => acc + x.{rng.choice(NOUNS)}, 0);",
        ],
        "sql": [
            f"SELECT {c}_id, COUNT(*) FROM {c}s WHERE created_at > NOW() - INTERVAL '{n} days' GROUP BY 1;",
            f"UPDATE {c}s SET status = 'done' WHERE id = {n} AND owner_id IS NOT NULL;",
            f"CREATE INDEX idx_{a} ON {c}s ({rng.choice(NOUNS)}_id, created_at DESC);",
        ],
        "shell": [
            f"grep -rn '{b}' src/ | awk -F: '{{print $1}}' | sort -u",
            f"docker run --rm -p {8000 + n}:80 -v $(pwd)/{c}:/data {c}-img:latest",
            f"find . -name '*.{rng.choice(['py', 'js', 'log'])}' -mtime -{n % 30} -exec rm {{}} \\;",
            f"git log --oneline --since='{n % 12 + 1} weeks ago' -- {c}/ | wc -l",
        ],
        "regex": [
            r"^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$",
            rf"(\d{{{n % 4 + 1}}})-([A-Z]{{2,3}})_(\w+)",
            r"^(?:\+?1[-. ]?)?\(?([0-9]{3})\)?[-. ]?([0-9]{3})[-. ]?([0-9]{4})$",
            rf"s/{c}_([0-9]+)/{b}[\1]/g",
        ],
        "css": [f".{c}-{n} > li:nth-child(2n+1) {{ margin: 0 {n % 16}px; color: #{n:03x}; }}"],
        "html": [
            f'<div class="{c}"><a href="/{c}/{n}">{b}</a></div>',
            f'<input type="text" name="{a}" value="" maxlength="{n}"/>',
        ],
        "json": [
            f'{{"{c}": {{"id": {n}, "tags": ["{a}", "{b}"], "active": {str(n % 2 == 0).lower()}}}}}',
            f'[{{"op": "replace", "path": "/{c}/{n}", "value": null}}]',
        ],
        "yaml": [f"{c}:\n  - name: {a}\n    port: {n}\n    enabled: true"],
        "c": [
            f"int {a}(const char *buf, size_t n) {{\n  for (size_t i = 0; i < n; ++i) if (buf[i] == '\\0') return i;\n  return -1;\n}}",
            f'#include <stdio.h>\nint main(void) {{ printf("%d\\n", {n}); return 0; }}',
        ],
        "rust": [f"fn {a}(v: &[u32]) -> Option<u32> {{ v.iter().copied().max() }}"],
        "go": [f"func {ident(rng, 'pascal')}(ctx context.Context) error {{\n\treturn nil\n}}"],
    }
    snippet = rng.choice(snippets[lang])
    ask = rng.choice(
        (
            "",
            "What does this do? ",
            "Fix the bug: ",
            "Explain this line: ",
            "Why does this fail?\n",
            "Rewrite this more clearly:\n",
            "Is this correct? ",
            "Convert to TypeScript: ",
        )
    )
    return ask + snippet


def identifier_text(rng: random.Random) -> str:
    n = rng.randint(0, 99999)
    options = [
        ident(rng),
        f"{ident(rng)}.{rng.choice(['py', 'ts', 'rs', 'go', 'json'])}",
        f"{rng.choice(string.ascii_uppercase)}{rng.choice(string.ascii_uppercase)}-{n}/"
        f"{rng.choice('ΩΣΔλμπ§¶')}{rng.choice('§#*&')}-{n % 997}*",
        "".join(rng.choice("0123456789abcdef") for _ in range(rng.choice((8, 32, 40, 64)))),
        f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4{rng.getrandbits(12):03x}-"
        f"a{rng.getrandbits(12):03x}-{rng.getrandbits(48):012x}",
        f"https://{rng.choice(NOUNS)}.example.com/{rng.choice(NOUNS)}/{n}?q={ident(rng)}&page={n % 9}",
        f"{rng.choice(NOUNS)}.{rng.choice(NOUNS)}{n % 100}@{rng.choice(NOUNS)}.org",
        f"/var/lib/{rng.choice(NOUNS)}/{ident(rng, 'kebab')}/{n}.log",
        f"v{n % 9}.{n % 37}.{n % 101}-rc.{n % 5}+build.{n}",
        f"{n % 256}.{(n * 7) % 256}.{(n * 13) % 256}.{(n * 3) % 256}:{1024 + n % 60000}",
        f"SKU {rng.choice(string.ascii_uppercase)}{n:05d}-{rng.choice(['XL', 'M', 'S'])}",
        f"${{{ident(rng, 'const')}:-{rng.choice(NOUNS)}}}",
    ]
    text = rng.choice(options)
    prefix = rng.choice(("", "", "Analyze this ID: ", "What is ", "Parse: ", "Validate ", "id="))
    return prefix + text


def symbols(rng: random.Random) -> str:
    n = rng.randint(1, 999)
    c = rng.choice(NOUNS)
    options = [
        f"∑(i=1..{n}) i² = {n * (n + 1) * (2 * n + 1) // 6} ≈ {n**3 / 3:.1f}",
        f"f(x) = {n}x³ − {n % 7}x² + √x / (1 + e^(−x))",
        f"[{n % 24:02d}:{n % 60:02d}:{n % 60:02d}] ERROR {c}.{ident(rng, 'snake')}: code={n} "
        f"msg='{ident(rng)} failed' retry={n % 5}/5",
        f"TypeError: Cannot read properties of undefined (reading '{ident(rng, 'camel')}')",
        f'Traceback (most recent call last):\n  File "{c}.py", line {n}, in {ident(rng, "snake")}\n'
        f"KeyError: '{c}'",
        f"{c}:{n} WARN >>> {{{n}}} <<< [{ident(rng, 'const')}] ### {'!' * (n % 4 + 1)}",
        f"({n} + {n % 17}) * {n % 9} / {n % 5 + 1} % {n % 7 + 2} == ?",
        f"¯\\_(ツ)_/¯ {rng.choice(['>_<', ':-)', '<3', '^_^', 'o_O'])} #{c} @{ident(rng, 'snake')}",
        f"| {c} | {n} | {n * 2} |\n|---|---|---|\n| {ident(rng)} | {n % 10} | ✓ |",
        f"# {c.title()}\n- item {n}\n- **{ident(rng)}**\n- `code`",
        f"E{n:04d}: expected ';' before '}}' token at {c}.c:{n}:{n % 80}",
        f"{rng.choice(['€', '$', '£', '¥'])}{n},{n % 1000:03d}.{n % 100:02d} (±{n % 9}.{n % 10}%)",
    ]
    return rng.choice(options)


def byte_job(rng: random.Random) -> str:
    word = rng.choice(NOUNS) + rng.choice(("", "s", "ing", "ed"))
    phrase = " ".join(rng.sample(NOUNS, rng.randint(2, 5)))
    options = [
        f"Reverse this string: {phrase}",
        f'Create a ROT13 encryption of this text: "{phrase.title()}"',
        f"How many characters are in '{word}'?",
        f"Convert to uppercase: {phrase}",
        f"Spell '{word}' backwards.",
        f"Fix the typo: {word[:-1] + word[-1] * 2 if len(word) > 2 else word} {phrase}",
        f"Base64-encode '{phrase}'",
        f"Translate to leetspeak: {phrase}",
        f"Remove the vowels from: {phrase}",
        f"Convert this markdown to HTML: # {phrase.title()}\\n- {word}\\n- {rng.choice(NOUNS)}",
        f"Hex dump of '{word}'?",
        f"Sort these letters: {''.join(rng.sample(string.ascii_lowercase, rng.randint(5, 12)))}",
    ]
    return rng.choice(options)


def binary_junk(rng: random.Random) -> str:
    """Bytes that are not text, as they arrive once decoded: random, tables, wide text, files."""
    size = rng.choice((rng.randint(16, 400), rng.randint(400, 3000)))
    kind = rng.choice(("random", "table", "utf16", "header"))
    if kind == "table":
        start = rng.randint(0, 200)
        raw = bytes((start + i) % 256 for i in range(size))
    elif kind == "utf16":
        raw = " ".join(rng.sample(NOUNS, 6)).encode("utf-16-le") * rng.randint(1, 8)
    else:
        raw = bytes(rng.getrandbits(8) for _ in range(size))
        if kind == "header":
            header = rng.choice(
                (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"PK\x03\x04\x14\x00", b"\x7fELF\x02\x01")
            )
            raw = header + raw
    return raw.decode("latin-1")


def short_question(rng: random.Random) -> str:
    c, d = rng.sample(NOUNS, 2)
    return rng.choice(
        (
            f"What is a {c}?",
            f"How do I {rng.choice(VERBS)} a {c} from the {d}?",
            f"Difference between {c} and {d}?",
            f"Can a {c} have more than one {d}?",
            f"Quick question: is {rng.choice(VERBS)}_{c} thread-safe?",
            f"Why is my {c} empty after {rng.choice(VERBS)}?",
        )
    )


# -- long prose ------------------------------------------------------------------------------

SUBJECTS = (
    "The committee",
    "Our team",
    "The research group",
    "The city council",
    "The company",
    "Each participant",
    "The tenant",
    "The landlord",
    "The author",
    "The board of directors",
    "Local residents",
    "The survey",
    "The project",
    "Most observers",
    "The historian",
    "The patient",
    "Farmers in the region",
    "The new policy",
)
PREDICATES = (
    "reviewed the findings of the previous quarter in considerable detail",
    "agreed that the schedule should be extended by several weeks",
    "noted that the results were consistent with earlier studies",
    "raised concerns about the cost of maintaining the existing buildings",
    "argued that the evidence did not support such a broad conclusion",
    "described how the situation had changed over the last decade",
    "shall pay the agreed amount no later than the fifth day of each month",
    "recommended a gradual approach rather than a sudden change",
    "spent most of the afternoon walking along the old river path",
    "explained why the earlier plan had been abandoned",
    "found that attendance had improved after the changes were introduced",
    "will be responsible for keeping the premises in good repair",
    "remembered the winter when the harbour froze for the first time",
    "questioned whether the benefits would reach the people who needed them most",
    "proposed that the remaining funds be used for training and equipment",
    "observed a steady decline in the number of visitors during the summer",
    "considered several alternatives before reaching a final decision",
    "was surprised by how quickly the community responded to the appeal",
)
CONNECTORS = (
    "However,",
    "In addition,",
    "As a result,",
    "At the same time,",
    "For this reason,",
    "Later that year,",
    "On the other hand,",
    "In practice,",
    "Nevertheless,",
    "Finally,",
    "",
    "",
    "",
)
CLAUSES = (
    "because the budget was limited",
    "although several members disagreed",
    "which surprised many of those present",
    "after a long and sometimes difficult discussion",
    "so that everyone would have time to prepare",
    "while the weather remained unusually mild",
    "as had been promised in the original agreement",
    "even though the data were incomplete",
    "",
    "",
)
OPENERS = (
    "",
    "",
    "Summarize the following report:\n\n",
    "Please read this document and list the key obligations of both parties.\n\n",
    "Here is the full text of the article.\n\n",
    "Minutes of the meeting\n\n",
    "Chapter {n}\n\n",
    "Abstract\n\n",
    "Compare and contrast the two approaches described below.\n\n",
)


def sentence(rng: random.Random) -> str:
    connector = rng.choice(CONNECTORS)
    subject = rng.choice(SUBJECTS)
    if connector:
        subject = subject[0].lower() + subject[1:]
    clause = rng.choice(CLAUSES)
    body = f"{subject} {rng.choice(PREDICATES)}" + (f", {clause}" if clause else "")
    return f"{connector} {body}.".strip()


# Whole sentences of two more genres, so "long prose" is not one register: technical
# documentation written in prose (it names software, yet reads as a document) and narrative.
TECHNICAL = (
    "The service keeps every incoming request in a queue until a worker is free to handle it.",
    "When a worker fails, the request is returned to the queue and retried after a short delay.",
    "Administrators can change the number of workers without restarting the whole system.",
    "Each customer account has its own storage area, and no account can read another's files.",
    "The nightly backup copies the database to a second region and keeps it for thirty days.",
    "Most problems reported by users turned out to be caused by an expired certificate.",
    "Before upgrading, read the release notes, since some settings were renamed in this version.",
    "The reporting module collects figures from every branch and produces a summary each week.",
    "Access to the administration pages is limited to staff who have completed the training.",
    "If the connection to the payment provider is lost, orders are held until it is restored.",
    "The previous version stored passwords in a weaker format, so users were asked to reset them.",
    "Performance improved noticeably once the largest tables were split by year.",
    "The team plans to retire the old interface at the end of the year, once the migration is done.",
    "Support staff can see the history of each ticket, including every message and status change.",
)
NARRATIVE = (
    "She had not been back to the town since her father sold the shop, nearly twenty years before.",
    "The rain had stopped by the time they reached the bridge, and the river was high and brown.",
    "He remembered the smell of the kitchen on Sunday mornings and the radio playing in the hall.",
    "Nobody in the village could say exactly when the old mill had last been used.",
    "They walked on in silence, each waiting for the other to mention what had happened.",
    "The letter arrived on a Tuesday, in an envelope addressed in handwriting she did not know.",
    "By the end of the summer the garden had grown wild, and the gate no longer closed properly.",
    "His sister laughed when he told her the plan, but she agreed to help all the same.",
    "The ferry was late again, and the passengers gathered under the roof of the small waiting room.",
    "It took her most of the winter to read the diaries, and some pages she read more than once.",
    "The neighbours said the house was empty, yet there was a light in the upstairs window.",
    "When the storm finally passed, the whole street came out to look at the fallen trees.",
)


def long_prose(rng: random.Random) -> str:
    genre = rng.choice(("general", "general", "technical", "narrative"))
    paragraphs = []
    for _ in range(rng.randint(3, 9)):
        count = rng.randint(3, 8)
        if genre == "general":
            paragraphs.append(" ".join(sentence(rng) for _ in range(count)))
        else:
            bank = TECHNICAL if genre == "technical" else NARRATIVE
            paragraphs.append(" ".join(rng.sample(bank, min(count, len(bank)))))
    opener = rng.choice(OPENERS).format(n=rng.randint(1, 30))
    numbered = rng.random() < 0.2
    if numbered:
        paragraphs = [f"{i}. {p}" for i, p in enumerate(paragraphs, 1)]
    return opener + "\n\n".join(paragraphs)


def log_dump(rng: random.Random) -> str:
    """A multi-line paste of logs or code: long-ish, but symbol-dense, not prose."""
    maker = rng.choice((symbols, code))
    return "\n".join(maker(rng) for _ in range(rng.randint(4, 25)))


BYT5_MAKERS = (
    code,
    code,
    code,
    log_dump,
    identifier_text,
    identifier_text,
    symbols,
    symbols,
    byte_job,
)
BYT5_MAKERS += (byte_job, binary_junk, binary_junk, short_question)


def rows(seed: int, byt5: int, longformer: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    made: list[tuple[str, str]] = []
    seen: set[str] = set()
    while len(made) < byt5:
        text = rng.choice(BYT5_MAKERS)(rng)
        if text not in seen:
            seen.add(text)
            made.append((text, "byt5"))
    for _ in range(longformer):
        made.append((long_prose(rng), "longformer"))
    rng.shuffle(made)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--byt5", type=int, default=420)
    parser.add_argument("--longformer", type=int, default=280)
    parser.add_argument("--out", default=str(Path(__file__).with_name("features_train.csv")))
    args = parser.parse_args()
    with open(args.out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows(args.seed, args.byt5, args.longformer))
    print(f"wrote {args.byt5 + args.longformer} rows to {args.out}")


if __name__ == "__main__":
    main()
