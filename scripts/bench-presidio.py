#!/usr/bin/env python3
"""Throughput benchmark for Microsoft Presidio's analyzer (pattern recognizers).

Usage:
    bench-presidio.py FILE [--max-mb N] [--nlp blank|noop]

Reads FILE line by line (at most N MB if --max-mb is given), runs
AnalyzerEngine.analyze(text=line, language="en", entities=ENTITIES) on every
non-empty line, counts findings per entity type and prints one JSON line:
    {"bytes", "lines", "seconds", "mb_per_s", "counts", "presidio_version", "nlp"}
Timing covers only the analyze loop: engine construction, file reading (lines
are read into memory first) and one warm-up call are excluded. MB = 10**6 bytes (as `luodi guard scan`).

Detection is done by Presidio's own predefined recognizers, registered
explicitly in a RecognizerRegistry (no spaCy NER recognizer):
    EmailRecognizer, CreditCardRecognizer, UsSsnRecognizer, IpRecognizer,
    IbanRecognizer (regex + validation) and PhoneRecognizer (phonenumbers lib).
They go through the full AnalyzerEngine path, including the default
LemmaContextAwareEnhancer and score thresholding (threshold 0).

NLP engine (--nlp):
    blank  (default) a SpacyNlpEngine whose pipeline is spacy.blank("en"):
           tokenization only, no tagger/lemmatizer/NER. Context words in the
           text are matched against token text (blank lemmas are empty), so
           context boosting is weaker than with en_core_web_*.
    noop   Presidio's NoOpNlpEngine: no tokenization at all, no context
           boosting from the text; the cheapest configuration.
No trained spaCy pipeline (en_core_web_sm/lg) is used: it is not published
under that name on the package registry, and `python -m spacy download`
fetches from outside the registry. The pattern recognizers do not need NER.

Setup (Python 3.11):
    python3 -m venv /tmp/presidio-venv
    /tmp/presidio-venv/bin/pip install presidio-analyzer
    /tmp/presidio-venv/bin/python scripts/bench-presidio.py corpus.txt --max-mb 1
(presidio-analyzer pulls in spacy, phonenumbers, regex and tldextract.)
"""

import argparse
import json
import os
import sys
import time
from collections import Counter
from importlib.metadata import version

# EmailRecognizer validates domains with tldextract, which otherwise tries to
# download the public suffix list on first use; use its bundled snapshot.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

import spacy  # noqa: E402
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry  # noqa: E402
from presidio_analyzer.nlp_engine import NoOpNlpEngine, SpacyNlpEngine  # noqa: E402
from presidio_analyzer.predefined_recognizers import (  # noqa: E402
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)

ENTITIES = [
    "EMAIL_ADDRESS",
    "CREDIT_CARD",
    "US_SSN",
    "IP_ADDRESS",
    "IBAN_CODE",
    "PHONE_NUMBER",
]


class BlankSpacyNlpEngine(SpacyNlpEngine):
    """SpacyNlpEngine backed by spacy.blank("en") (tokenizer only)."""

    def load(self) -> None:
        self.nlp = {"en": spacy.blank("en")}


def build_engine(nlp: str) -> AnalyzerEngine:
    if nlp == "blank":
        nlp_engine = BlankSpacyNlpEngine(
            models=[{"lang_code": "en", "model_name": "blank:en"}]
        )
    else:
        nlp_engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    registry = RecognizerRegistry(supported_languages=["en"])
    for rec in (
        EmailRecognizer,
        CreditCardRecognizer,
        UsSsnRecognizer,
        IpRecognizer,
        IbanRecognizer,
        PhoneRecognizer,
    ):
        registry.add_recognizer(rec())
    return AnalyzerEngine(
        registry=registry, nlp_engine=nlp_engine, supported_languages=["en"]
    )


def read_lines(path: str, max_mb: float | None) -> tuple[list[str], int]:
    limit = int(max_mb * 1_000_000) if max_mb else None
    lines, total = [], 0
    with open(path, "rb") as f:
        for raw in f:
            if limit is not None and total + len(raw) > limit:
                break
            total += len(raw)
            lines.append(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
    return lines, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--max-mb", type=float, default=None)
    ap.add_argument("--nlp", choices=["blank", "noop"], default="blank")
    args = ap.parse_args()

    engine = build_engine(args.nlp)
    lines, nbytes = read_lines(args.file, args.max_mb)
    counts = Counter({e: 0 for e in ENTITIES})
    # Warm-up outside the timed loop (lazy regex compilation, PSL snapshot load).
    engine.analyze(text="a@example.com 10.0.0.1", language="en", entities=ENTITIES)

    start = time.perf_counter()
    for line in lines:
        if line:
            for r in engine.analyze(text=line, language="en", entities=ENTITIES):
                counts[r.entity_type] += 1
    seconds = time.perf_counter() - start

    print(
        json.dumps(
            {
                "bytes": nbytes,
                "lines": len(lines),
                "seconds": round(seconds, 3),
                "mb_per_s": round(nbytes / 1e6 / seconds, 4)
                if seconds
                else None,
                "counts": dict(counts),
                "presidio_version": version("presidio-analyzer"),
                "nlp": "spacy.blank(en)" if args.nlp == "blank" else "NoOpNlpEngine",
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
