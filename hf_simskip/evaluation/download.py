"""Fetch the SentEval data files into ``<data_dir>/downstream/...`` (SentEval's own layout).

    python -m hf_simskip.evaluation.download --data-dir DIR [--base-url URL] [--tasks CR MR ...]

Where the files come from. SentEval's data/downstream/get_transfer_data.bash fetches MRPC from
https://dl.fbaipublicfiles.com/senteval/senteval_data/ and SST-2 from PrincetonML/SIF's data folder
as single files; those two are fetched from the same places here. The other tasks come there as
archives (MR/CR/SUBJ/MPQA in datasmall_NB_ACL12.zip, STS-B as a tarball, SICK as zips, TREC from
cogcomp) that the bash script unpacks and re-tokenizes with Moses/sed, so there is no single official
file to fetch. For those, pass ``--base-url`` pointing at a mirror laid out like SentEval's data
folder (``<base>/downstream/CR/custrev.pos``, ...), e.g. a copy of an existing SentEval data folder
served over http, or run SentEval's bash script.

Checksums: the sha256 values below are those of the reference copy this project was tested on
(shared/data/senteval; see its SOURCES.md). They are NOT checksums published by SentEval: SentEval
publishes none, and its own tokenized CR differs (2406/1369 rows). A mismatch is an error unless
``--no-verify`` is given. Every file is written to a temporary name and moved into place with
os.replace only after its checksum matched, so an interrupted download never leaves a partial file.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import urllib.request
from pathlib import Path

from ..files import atomic_path
from .tasks import TASK_FILES, check_task_names

logger = logging.getLogger(__name__)
OFFICIAL = {
    "MRPC/msr_paraphrase_train.txt": "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_train.txt",
    "MRPC/msr_paraphrase_test.txt": "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_test.txt",
    "SST/binary/sentiment-train": "https://raw.githubusercontent.com/PrincetonML/SIF/master/data/sentiment-train",
    "SST/binary/sentiment-dev": "https://raw.githubusercontent.com/PrincetonML/SIF/master/data/sentiment-dev",
    "SST/binary/sentiment-test": "https://raw.githubusercontent.com/PrincetonML/SIF/master/data/sentiment-test",
}
# sha256 of the reference copy (shared/data/senteval), not published by SentEval
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


def file_url(relative: str, base_url: str | None) -> str:
    if base_url:
        return f"{base_url.rstrip('/')}/downstream/{relative}"
    if relative not in OFFICIAL:
        raise ValueError(
            f"{relative}: SentEval distributes this file only inside an archive that its "
            "get_transfer_data.bash unpacks and tokenizes; pass --base-url URL of a mirror laid out "
            "like SentEval's data folder, or run SentEval's data/downstream/get_transfer_data.bash"
        )
    return OFFICIAL[relative]


def fetch(url: str, dest: Path, sha256: str | None, timeout: float = 60.0) -> Path:
    """Download url to dest atomically; raise ValueError on a checksum mismatch (dest untouched)."""
    digest = hashlib.sha256()
    with atomic_path(dest) as tmp:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise ValueError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest.hexdigest()}")
    return dest


def download(
    data_dir,
    tasks=None,
    base_url: str | None = None,
    verify: bool = True,
    checksums: dict | None = None,
    force: bool = False,
) -> list[Path]:
    """Fetch the files of ``tasks`` (default all) into data_dir; returns the paths written or kept."""
    checksums = SHA256 if checksums is None else checksums
    done = []
    for task in check_task_names(tasks):
        for rel in TASK_FILES[task]:
            dest = Path(data_dir) / "downstream" / rel
            expected = checksums.get(rel) if verify else None
            if dest.is_file() and not force:
                if expected is None or hashlib.sha256(dest.read_bytes()).hexdigest() == expected:
                    logger.info("kept %s (already present)", dest)
                    done.append(dest)
                    continue
            url = file_url(rel, base_url)
            logger.info("fetching %s", url)
            done.append(fetch(url, dest, expected))
    return done


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Fetch SentEval task files (see the module docstring)")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--base-url", default=None, help="mirror laid out like SentEval's data folder")
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--no-verify", action="store_true", help="skip sha256 checks")
    parser.add_argument("--force", action="store_true", help="fetch even files already present")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = download(args.data_dir, args.tasks, args.base_url, verify=not args.no_verify, force=args.force)
    logger.info("%d files in %s", len(paths), Path(args.data_dir) / "downstream")


if __name__ == "__main__":
    main()
