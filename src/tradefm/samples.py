"""Finding the LOBSTER sample files a demo runs on, and checking they are the files LOBSTER publishes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .events import InputError

DOWNLOAD = "https://lobsterdata.com/info/DataSamples.php"
SHA256 = {
    "LOBSTER_SampleFile_AAPL_2012-06-21_1.zip": "b50994786f2996ae3c349d6b11a07b412c981a417a17ece44f068f9e12e45058",
    "LOBSTER_SampleFile_AMZN_2012-06-21_1.zip": "60f646b628ef73edd37aacde208c992c2454a0012c437a191a0d9cf20b84fd10",
    "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip": "23290152d0a588359ac59a969d385748112de5733065c81f5ba3ae9d770f74db",
    "LOBSTER_SampleFile_GOOG_2012-06-21_1.zip": "34ec126261ac19831972f47edd8ab874d52d93b54a9ab623ee4ce89d3f90f5cc",
    "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip": "2fa66b61c7c4d4cd3f19180aaa7f5937a26355f81b2ac8e4a84e36550e8dde4a",
    "LOBSTER_SampleFile_GOOG_2012-06-21_5.zip": "a1146b74a3951cc34a8571c75940b7fd498445e48949123cae88a29a4e8b5441",
}


def candidates(explicit: str | Path | None = None) -> list[Path]:
    """Where samples are looked for, in order: --data, $TRADEFM_DATA, ../shared/data/lobster, the user cache."""
    out = [Path(explicit)] if explicit else []
    if os.environ.get("TRADEFM_DATA"):
        out.append(Path(os.environ["TRADEFM_DATA"]))
    out.append(Path.cwd().parent / "shared" / "data" / "lobster")
    out.append(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tradefm" / "lobster")
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find_samples(explicit: str | Path | None = None) -> list[Path]:
    """The sample zips of the first place that has any, each checked against LOBSTER's published file; an
    explicit folder without them is an error, never passed over for another place."""
    if explicit and not sorted(Path(explicit).glob("LOBSTER_SampleFile_*.zip")):
        why = "does not exist" if not Path(explicit).exists() else "no LOBSTER_SampleFile_*.zip in it"
        raise InputError(f"{explicit}: no LOBSTER sample zips ({why}); download them from {DOWNLOAD}")
    for folder in candidates(explicit):
        zips = sorted(p for p in folder.glob("LOBSTER_SampleFile_*.zip")) if folder.is_dir() else []
        if not zips:
            continue
        for z in zips:
            want = SHA256.get(z.name)
            if want and sha256(z) != want:
                raise InputError(f"{z}: checksum differs from the published sample (sha256 {want}); download it again")
        return zips
    places = "\n  ".join(str(p) for p in candidates(explicit))
    raise FileNotFoundError(
        f"no LOBSTER sample zips found. Download the free samples (e.g. LOBSTER_SampleFile_AAPL_2012-06-21_1.zip) "
        f"from {DOWNLOAD} and put them in one of:\n  {places}\nor pass --data DIR."
    )
