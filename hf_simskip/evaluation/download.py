"""Fetch the SentEval task files into ``<data_dir>/downstream/...`` (SentEval's own layout) and the
unlabeled training text into ``<data_dir>/unlabeled/``.

    python -m hf_simskip.evaluation.download --data-dir DIR [--tasks CR MR ... unlabeled] [--base-url URL]

Where the files come from. Without ``--base-url``, from the official locations: those of SentEval's
data/downstream/get_transfer_data.bash, and SimCSE's data/download_wiki.sh for ``unlabeled/``:

- MR, CR, SUBJ, MPQA: the four pairs of files inside ``datasmall_NB_ACL12.zip`` (dl.fbaipublicfiles.com);
- TREC: ``train_5500.label`` and ``TREC_10.label`` from cogcomp (SentEval's address at illinois.edu,
  then the group's current one at upenn.edu);
- SST2: the three ``sentiment-*`` files of PrincetonML/SIF's data folder;
- MRPC: ``msr_paraphrase_{train,test}.txt`` (dl.fbaipublicfiles.com);
- STS-B: the three csv files inside ``Stsbenchmark.tar.gz`` (ixa2.si.ehu.es);
- SICK: ``SICK_{train,trial,test_annotated}.txt`` inside three zips (alt.qcri.org);
- unlabeled: ``wiki1m_for_simcse.txt`` (SimCSE's 1M Wikipedia sentences, huggingface.co).

The files are written as their sources publish them. SentEval's script also re-tokenizes some (sed
for MR/CR/SUBJ/MPQA, quote removal for TREC, Moses for STS-B and SICK); that is not repeated here. The
reference copy this project was tested on was not made by that script either (its TREC files are
byte-identical to cogcomp's, its STS-B and SICK untokenized, its CR 2407/1368 rows where SentEval's
has 2406/1369), so these files can differ from it and from SentEval's processed copy, and numbers
with them from published tables; the result's ``protocol.data_fingerprint`` records which files were
scored.

Verification. Every file's line count (header lines included) is checked against the known size of
the data set, and its sha256 where one is published: MRPC's two files and TREC's two (the download
checksums in Hugging Face ``datasets``' glue and trec scripts, for the dl.fbaipublicfiles.com and
cogcomp.seas.upenn.edu copies). For the other files no published checksum was found, and the
checksums of the original archives could not be computed on the offline machine this module was
written on, so for them the line counts are the check. ``--no-verify`` skips both checks.

With ``--base-url``, every file comes from a mirror laid out like a SentEval data folder
(``<base>/downstream/CR/custrev.pos``, ...; ``<base>/unlabeled/<name>``), e.g. a copy of an existing
data folder served over http, and is checked against the sha256 of the reference copy this project
was tested on (shared/data/senteval; NOT checksums published by SentEval, which publishes none; its
own tokenized CR differs: 2406/1369 rows against the reference's 2407/1368).

Every file is written to a temporary name and moved into place only after it passed its checks, so an
interrupted or failed download never leaves a partial file. A network failure is one line naming the
URL (``ConnectionError``); a failed check is one line naming the file (``ValueError``).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import logging
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_path
from .tasks import TASK_FILES, TASKS

logger = logging.getLogger(__name__)
UNLABELED = "unlabeled"  # the pseudo-task of --tasks that fetches the unlabeled training text
UNLABELED_FILES = ["wiki1m_for_simcse.txt"]


@dataclass(frozen=True)
class Source:
    """Where one data file comes from: ``urls`` (tried in order), the ``member`` of the archive found
    there (None: the download is the file), and what it is checked against."""

    urls: tuple[str, ...]
    member: str | None = None  # path inside a .zip or .tar.gz, matched by its ending
    lines: int | None = None  # lines of the file, header included
    sha256: str | None = None  # of the downloaded file (for a member: of the archive), where published


_FB = "https://dl.fbaipublicfiles.com/senteval/senteval_data"
_NB = (f"{_FB}/datasmall_NB_ACL12.zip",)
_TREC = ("http://cogcomp.cs.illinois.edu/Data/QA/QC", "https://cogcomp.seas.upenn.edu/Data/QA/QC")
_SIF = "https://raw.githubusercontent.com/PrincetonML/SIF/master/data"
_STSB = ("http://ixa2.si.ehu.es/stswiki/images/4/48/Stsbenchmark.tar.gz",)
_SICK = "http://alt.qcri.org/semeval2014/task1/data/uploads"
OFFICIAL = {
    "CR/custrev.pos": Source(_NB, "data/customerr/custrev.pos", 2406),
    "CR/custrev.neg": Source(_NB, "data/customerr/custrev.neg", 1369),
    "MPQA/mpqa.pos": Source(_NB, "data/mpqa/mpqa.pos", 3312),
    "MPQA/mpqa.neg": Source(_NB, "data/mpqa/mpqa.neg", 7294),
    "MR/rt-polarity.pos": Source(_NB, "data/rt10662/rt-polarity.pos", 5331),
    "MR/rt-polarity.neg": Source(_NB, "data/rt10662/rt-polarity.neg", 5331),
    "SUBJ/subj.objective": Source(_NB, "data/subj/subj.objective", 5000),
    "SUBJ/subj.subjective": Source(_NB, "data/subj/subj.subjective", 5000),
    # sha256: Hugging Face datasets' trec and glue (mrpc) download checksums, for these very files
    "TREC/train_5500.label": Source(
        tuple(f"{base}/train_5500.label" for base in _TREC),
        lines=5452,
        sha256="9e4c8bdcaffb96ed61041bd64b564183d52793a8e91d84fc3a8646885f466ec3",
    ),
    "TREC/TREC_10.label": Source(
        tuple(f"{base}/TREC_10.label" for base in _TREC),
        lines=500,
        sha256="033f22c028c2bbba9ca682f68ffe204dc1aa6e1cf35dd6207f2d4ca67f0d0e8e",
    ),
    "SST/binary/sentiment-train": Source((f"{_SIF}/sentiment-train",), lines=67349),
    "SST/binary/sentiment-dev": Source((f"{_SIF}/sentiment-dev",), lines=872),
    "SST/binary/sentiment-test": Source((f"{_SIF}/sentiment-test",), lines=1821),
    "MRPC/msr_paraphrase_train.txt": Source(
        (f"{_FB}/msr_paraphrase_train.txt",),
        lines=4077,
        sha256="60a9b09084528f0673eedee2b69cb941920f0b8cd0eeccefc464a98768457f89",
    ),
    "MRPC/msr_paraphrase_test.txt": Source(
        (f"{_FB}/msr_paraphrase_test.txt",),
        lines=1726,
        sha256="a04e271090879aaba6423d65b94950c089298587d9c084bf9cd7439bd785f784",
    ),
    "STS/STSBenchmark/sts-train.csv": Source(_STSB, "stsbenchmark/sts-train.csv", 5749),
    "STS/STSBenchmark/sts-dev.csv": Source(_STSB, "stsbenchmark/sts-dev.csv", 1500),
    "STS/STSBenchmark/sts-test.csv": Source(_STSB, "stsbenchmark/sts-test.csv", 1379),
    "SICK/SICK_train.txt": Source((f"{_SICK}/sick_train.zip",), "SICK_train.txt", 4501),
    "SICK/SICK_trial.txt": Source((f"{_SICK}/sick_trial.zip",), "SICK_trial.txt", 501),
    "SICK/SICK_test_annotated.txt": Source((f"{_SICK}/sick_test_annotated.zip",), "SICK_test_annotated.txt", 4928),
    "unlabeled/wiki1m_for_simcse.txt": Source(
        ("https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/main/wiki1m_for_simcse.txt",),
        lines=1_000_000,
    ),
}
# sha256 of the reference copy (shared/data/senteval), checked for files fetched from a --base-url mirror
SHA256 = {
    "CR/custrev.neg": "8f29d7fa39f9862764b71f36b193f0674e0056287ffc5bf170edf6db42cc8f83",
    "CR/custrev.pos": "15eeb0b9424043bb3755488e2d8ed97bdaeba464a5c230f213bad075125d2192",
    "MPQA/mpqa.neg": "02e193d98c7715bc6200bb23dc6d2903482bd80c0432c53c3f3738c636df3f72",
    "MPQA/mpqa.pos": "f4aaafdd63c439fd2d056149f3b5d200416dabb200a8b7d8f4bf9903981ff8a5",
    "MR/rt-polarity.neg": "4ace77d558c3714723843f1d65b60c01e3417b208180f0728808d76ad0eeeaca",
    "MR/rt-polarity.pos": "2da124ec187a9d5a29c9f04e91c540e02baed5af8868f550a26bd6fd4dbf8bf0",
    "MRPC/msr_paraphrase_test.txt": "0d1a876ed5b29dc9779ec212f0d7a1601caafbc5837cd1200e638f0b0a654562",
    "MRPC/msr_paraphrase_train.txt": "178c3d39a096a887a4afa2fdecc9089ad7d7f74c019a95ce8cdac2b4855ebf4a",
    "SICK/SICK_test_annotated.txt": "4e313cdff4143122ee30541df2821f87f57c85d2763ab1a436fdb9863e34c1cc",
    "SICK/SICK_train.txt": "266cf8047149bd1d68138dd30439f3122bff30069740ac6705bb6197d9f1b48e",
    "SICK/SICK_trial.txt": "5a88cfb62f8c6bd2a3cce0f2421ba2cb8c2be5ab4a800f6f01e2c64aafb7db56",
    "SST/binary/sentiment-dev": "9a6c7403b71a9b762158387afe4431253ae10cdfb2319b5275289f3766f48291",
    "SST/binary/sentiment-test": "4fefd1cd67526cf87ebc7fafc3afc21cc7cfa6ae53b45e74f77f9456e3c62752",
    "SST/binary/sentiment-train": "10a92a297ec38e262386e5a2713b4bc70e5d18ced88b7f54bd171a26e5b34ab5",
    "STS/STSBenchmark/sts-dev.csv": "5d7e944d8b02734b07bfdb5df67db3420c64bed153fcaa1ba47ad03480cf4234",
    "STS/STSBenchmark/sts-test.csv": "affe45928a66ee5a708531233c95b7dacbbdc57f974f002a3d32ea0180cf816a",
    "STS/STSBenchmark/sts-train.csv": "0f71910b59aa1ad973c5897f0791f3b0965a92b8f82b1a95f3eea9f4162fda82",
    "SUBJ/subj.objective": "5ddc9b44dc60d64d651347fcd7bdd489b0c70661e3f768215c16eea36f51204a",
    "SUBJ/subj.subjective": "73a2dcf8dc3cbcc7f068a70ef9f021c86b2a8e4dac81566b7fd015b3e938f2c5",
    "TREC/TREC_10.label": "033f22c028c2bbba9ca682f68ffe204dc1aa6e1cf35dd6207f2d4ca67f0d0e8e",
    "TREC/train_5500.label": "9e4c8bdcaffb96ed61041bd64b564183d52793a8e91d84fc3a8646885f466ec3",
}


def manifest(tasks=None) -> list[str]:
    """The files (relative to the data folder) of ``tasks``: task names and/or "unlabeled"; None: all."""
    names = TASKS + [UNLABELED] if tasks is None else ([tasks] if isinstance(tasks, str) else list(tasks))
    unknown = [t for t in names if t not in TASKS + [UNLABELED]]
    if unknown or not names:
        raise ValueError(f"unknown or no task name(s) {unknown}; valid names are {TASKS + [UNLABELED]}")
    rels = [f"downstream/{rel}" for name in dict.fromkeys(names) if name != UNLABELED for rel in TASK_FILES[name]]
    return rels + ([f"unlabeled/{name}" for name in UNLABELED_FILES] if UNLABELED in names else [])


def _key(rel: str) -> str:  # "downstream/CR/custrev.pos" -> "CR/custrev.pos"; unlabeled files keep their folder
    return rel.split("/", 1)[1] if rel.startswith("downstream/") else rel


def mirror_sources(base_url: str, checksums: dict | None = None) -> dict[str, Source]:
    """Sources for a mirror laid out like the data folder, checked against ``checksums`` (the reference copy's)."""
    checksums = SHA256 if checksums is None else checksums
    base = base_url.rstrip("/")
    out = {}
    for key in OFFICIAL:
        rel = key if key.startswith("unlabeled/") else f"downstream/{key}"
        out[key] = Source((f"{base}/{rel}",), sha256=checksums.get(key))
    return out


def count_lines(data: bytes) -> int:
    """Lines as ``wc -l`` counts them, plus a last line without its newline."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _get(url: str, timeout: float) -> bytes | str:
    """The body at url, or the reason (a str) why it could not be fetched."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read()
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code} {err.reason}"
    except urllib.error.URLError as err:
        return str(err.reason)
    except (OSError, http.client.HTTPException) as err:
        return f"{type(err).__name__}: {err}"


def _extract(archive: bytes, member: str, url: str) -> bytes:
    """The file whose path inside a .zip or .tar.gz archive ends with ``member``."""
    try:
        if zipfile.is_zipfile(io.BytesIO(archive)):
            with zipfile.ZipFile(io.BytesIO(archive)) as z:
                names = [n for n in z.namelist() if f"/{n}".endswith(f"/{member}")]
                if names:
                    return z.read(names[0])
                listing = z.namelist()
        else:
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as t:
                found = [m for m in t.getmembers() if m.isfile() and f"/{m.name}".endswith(f"/{member}")]
                if found:
                    return t.extractfile(found[0]).read()
                listing = t.getnames()
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"{url}: not a readable .zip or .tar.gz archive ({err}); retry, or pass --base-url") from None
    raise ValueError(f"{url}: the archive holds no {member!r} (it holds {listing[:8]}...); pass --base-url")


class _Fetcher:
    """Downloads each URL once per run (an archive serves several files)."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.cache: dict[str, bytes] = {}

    def get(self, url: str) -> bytes:
        if url not in self.cache:
            logger.info("fetching %s", url)
            body = _get(url, self.timeout)
            if isinstance(body, str):
                raise ConnectionError(
                    f"could not download {url} ({body}); check the network connection or proxy, or pass "
                    "--base-url with a mirror of a SentEval data folder"
                )
            self.cache[url] = body
        return self.cache[url]


def _intact(path: Path, source: Source) -> bool:
    """Whether a file already on disk passes the checks a fresh download of it would pass."""
    data = path.read_bytes()
    if source.sha256 is not None and source.member is None:
        return hashlib.sha256(data).hexdigest() == source.sha256
    return source.lines is None or count_lines(data) == source.lines


def _verify(rel: str, dest: Path, source: Source, url: str, archive: bytes, data: bytes) -> None:
    if source.sha256 is not None:
        digest = hashlib.sha256(archive).hexdigest()
        if digest != source.sha256:
            raise ValueError(
                f"checksum mismatch for {url} ({rel}): expected sha256 {source.sha256}, got {digest}; "
                f"nothing was written to {dest}. Retry, or pass --no-verify to keep it anyway"
            )
    if source.lines is not None and count_lines(data) != source.lines:
        raise ValueError(
            f"{rel} from {url}: expected {source.lines} lines, got {count_lines(data)} (an incomplete download, "
            f"or the source changed); nothing was written to {dest}. Retry, or pass --no-verify to keep it anyway"
        )


def download(
    data_dir,
    tasks=None,
    base_url: str | None = None,
    verify: bool = True,
    checksums: dict | None = None,
    force: bool = False,
    sources: dict | None = None,
    timeout: float = 60.0,
) -> list[Path]:
    """Fetch the files of ``tasks`` (task names and/or "unlabeled"; default: all of them) into data_dir;
    returns the paths written or kept. ``sources`` replaces the table of official locations (tests);
    ``base_url`` reads every file from a mirror instead, checked against ``checksums`` (default: the
    reference copy's sha256). A file already present is kept (``force`` fetches it again)."""
    table = mirror_sources(base_url, checksums) if base_url else (OFFICIAL if sources is None else sources)
    fetcher = _Fetcher(timeout)
    done = []
    for rel in manifest(tasks):
        key = _key(rel)
        dest = Path(data_dir) / rel
        if key not in table:
            raise ValueError(f"no source known for {rel}; pass --base-url URL of a mirror of a SentEval data folder")
        source = table[key]
        if dest.is_file() and not force and (not verify or _intact(dest, source)):
            logger.info("kept %s (already present; --force fetches it again)", dest)
            done.append(dest)
            continue
        errors = []
        for url in source.urls:  # the next address when one is dead or serves something else
            try:
                body = fetcher.get(url)
                data = _extract(body, source.member, url) if source.member else body
                if verify:
                    _verify(rel, dest, source, url, body, data)
                break
            except (ConnectionError, ValueError) as err:
                errors.append(err)
        else:
            if len(errors) == 1:
                raise errors[0]
            kind = ConnectionError if all(isinstance(e, ConnectionError) for e in errors) else ValueError
            raise kind(" / then: ".join(str(e) for e in errors))
        with atomic_path(dest) as tmp:
            tmp.write_bytes(data)
        logger.info("wrote %s (%d lines)", dest, count_lines(data))
        done.append(dest)
    return done


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Fetch the SentEval task files and the unlabeled training text (see the module docstring)"
    )
    parser.add_argument("--data-dir", required=True, help="the data folder to fill (downstream/, unlabeled/)")
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        help=f"any of {TASKS + [UNLABELED]} (default: all; 'unlabeled' is SimCSE's wiki1m_for_simcse.txt)",
    )
    parser.add_argument("--base-url", default=None, help="mirror laid out like a SentEval data folder")
    parser.add_argument("--no-verify", action="store_true", help="skip the checksum and line-count checks")
    parser.add_argument("--force", action="store_true", help="fetch even files already present")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        paths = download(
            args.data_dir, args.tasks, args.base_url, verify=not args.no_verify, force=args.force, timeout=args.timeout
        )
    except (ValueError, TypeError, OSError) as err:
        sys.stderr.write(f"download: error: {err}\n")
        return 1
    logger.info("%d files in %s", len(paths), args.data_dir)
    return 0


__all__ = ["download", "manifest", "OFFICIAL", "SHA256", "Source", "mirror_sources", "count_lines"]

if __name__ == "__main__":
    sys.exit(main())
