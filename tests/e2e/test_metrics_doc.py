"""docs/monitoring.md against a real daemon's /metrics, both ways.

The page's metric table (| `name` | type | labels | HELP text |) must list
exactly the metric families a running daemon exports, each with the daemon's
TYPE, label names and `# HELP` text, character for character; every
`# HELP` / `# TYPE` line quoted elsewhere on the page (the example scrape)
must be the daemon's too; and every s3o_ metric name the page mentions
(PromQL examples, prose) must be one the daemon exports, or a series of
one (_bucket, _sum, _count). The database-wide gauges appear only after
the first statistics query, about a second after the daemon connects:
the test scrapes until every documented family is there, or 10 s pass."""

import os
import re
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Failure, check, free_port, make_config, run  # noqa: E402

DOC = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "monitoring.md"))
DOC_NAME = "docs/monitoring.md"
TABLE_ROW = re.compile(r"^\|\s*`(s3o_[a-z0-9_]+)`\s*\|\s*([a-z]+)\s*\|([^|]*)\|(.*)\|\s*$")
HELP_OR_TYPE = re.compile(r"^# (HELP|TYPE) (\S+) ?(.*)$")
MENTION = re.compile(r"\bs3o_notifications?_[a-z0-9_]+")
SERIES_SUFFIXES = ("_bucket", "_sum", "_count")


def unescape_help(s):
    """Prometheus text format: HELP escapes backslash and newline only."""
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\"}.get(m.group(1), "\\" + m.group(1)), s)


def parse_scrape(text):
    """{family: {"help", "type", "labels"}} from the exposition text."""
    fams = {}
    for line in text.splitlines():
        m = HELP_OR_TYPE.match(line)
        if m:
            f = fams.setdefault(m.group(2), {"help": None, "type": None, "labels": set()})
            f["help" if m.group(1) == "HELP" else "type"] = unescape_help(m.group(3)) if m.group(1) == "HELP" else m.group(3)
            continue
        if not line or line.startswith("#"):
            continue
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
        fam = name
        if fam not in fams:
            for suf in SERIES_SUFFIXES:
                if name.endswith(suf) and name[: -len(suf)] in fams:
                    fam = name[: -len(suf)]
        check(fam in fams, "sample %s follows its family's HELP and TYPE" % name, "a family", line)
        brace = line.find("{")
        if brace >= 0 and brace < line.find(" "):
            fams[fam]["labels"] |= set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', line[brace:]))
    for f in fams.values():
        f["labels"].discard("le")
    return fams


def parse_doc():
    """(table, quoted, mentions): the metric table as {family: {"help",
    "type", "labels"}}, the # HELP / # TYPE lines quoted on the page as
    [(lineno, kind, family, text)], and every s3o_ name the page mentions
    as {name: first lineno}."""
    with open(DOC, encoding="utf-8") as f:
        lines = f.read().splitlines()
    table, quoted, mentions = {}, [], {}
    for n, line in enumerate(lines, 1):
        m = TABLE_ROW.match(line)
        if m:
            name = m.group(1)
            check(name not in table, "%s:%d: %s has one row in the metric table" % (DOC_NAME, n, name), "one row", "a second one")
            labels = set(re.findall(r"`([a-zA-Z_][a-zA-Z0-9_]*)`", m.group(3)))
            table[name] = {"help": m.group(4).strip(), "type": m.group(2), "labels": labels, "line": n}
        m = HELP_OR_TYPE.match(line.strip())
        if m:
            quoted.append((n, m.group(1), m.group(2), m.group(3)))
        for name in MENTION.findall(line):
            mentions.setdefault(name, n)
    return table, quoted, mentions


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as resp:
        check(resp.status == 200, "GET /metrics", 200, resp.status)
        return resp.read().decode("utf-8")


def test_monitoring_md_matches_metrics(ctx):
    table, quoted, mentions = parse_doc()
    check(len(table) >= 10, "%s has a metric table (| `name` | type | labels | HELP text |)" % DOC_NAME, ">= 10 rows", len(table))

    r = ctx.receiver()
    port = free_port()
    cfg = make_config(
        [("storage", {"url": r.url("/storage"), "events": "s3:*"}), ("ops", {"url": r.url("/ops"), "events": "backend.*"})],
        admin_listen="127.0.0.1:%d" % port,
    )
    ctx.daemon(cfg).start()

    # Scrape until every documented family is exported (the database-wide
    # gauges follow the first statistics query), then compare.
    deadline = time.monotonic() + 10
    while True:
        text = scrape(port)
        fams = parse_scrape(text)
        if set(table) <= set(fams) or time.monotonic() >= deadline:
            break
        time.sleep(0.2)

    problems = []
    for name in sorted(set(fams) - set(table)):
        problems.append("%s is exported but not in %s's metric table\n      daemon: # HELP %s %s" % (name, DOC_NAME, name, fams[name]["help"]))
    for name in sorted(set(table) - set(fams)):
        problems.append("%s:%d: %s is documented but the daemon does not export it (waited 10 s)" % (DOC_NAME, table[name]["line"], name))
    for name in sorted(set(table) & set(fams)):
        doc, got = table[name], fams[name]
        for what in ("help", "type", "labels"):
            if doc[what] != got[what]:
                problems.append(
                    "%s:%d: %s: the %s differ\n      doc:    %r\n      daemon: %r"
                    % (DOC_NAME, doc["line"], name, {"help": "HELP texts", "type": "TYPEs", "labels": "label names"}[what], doc[what], got[what])
                )
    for n, kind, name, text_ in quoted:
        got = fams.get(name)
        want = None if got is None else (got["help"] if kind == "HELP" else got["type"])
        doc_text = unescape_help(text_) if kind == "HELP" else text_
        if want is None or doc_text != want:
            problems.append("%s:%d: the quoted '# %s %s' line differs from the daemon's\n      doc:    %r\n      daemon: %r" % (DOC_NAME, n, kind, name, doc_text, want))
    for name, n in sorted(mentions.items(), key=lambda kv: kv[1]):
        base = name
        for suf in SERIES_SUFFIXES:
            if name.endswith(suf) and name[: -len(suf)] in fams and fams[name[: -len(suf)]]["type"] == "histogram":
                base = name[: -len(suf)]
        if base not in fams:
            problems.append("%s:%d: mentions %s, which the daemon does not export" % (DOC_NAME, n, name))

    if problems:
        raise Failure(
            "%s and the daemon's /metrics disagree (%d problems):\n  - %s\n--- scrape ---\n%s"
            % (DOC_NAME, len(problems), "\n  - ".join(problems), text)
        )
    print("%d metric families, %d quoted HELP/TYPE lines and %d metric names in %s match the daemon" % (len(table), len(quoted), len(mentions), DOC_NAME))


if __name__ == "__main__":
    run([test_monitoring_md_matches_metrics], watchdog=120)
