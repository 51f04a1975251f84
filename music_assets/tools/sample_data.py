"""Deterministic sample data shaped like the lab's raw bucket (streams, users, Spotify songs).

``generate_dataset`` writes ``songs/songs.csv``, ``users/users.csv`` and
``streams/streams{1..files}.csv`` under ``out_dir``; with ``dirty=True`` it adds one file per
bad-input rule of KPI_SPEC (V1-V5) plus ``dirty_cases.json`` describing the expected outcome
of each. Same arguments give byte-identical files. Stdlib, numpy and pyarrow only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

STREAMS_HEADER = ("user_id", "track_id", "listen_time")
USERS_HEADER = ("user_id", "user_name", "user_age", "user_country", "created_at")
SONGS_HEADER = (
    "id",
    "track_id",
    "artists",
    "album_name",
    "track_name",
    "popularity",
    "duration_ms",
    "explicit",
    "danceability",
    "energy",
    "key",
    "loudness",
    "mode",
    "speechiness",
    "acousticness",
    "instrumentalness",
    "liveness",
    "valence",
    "tempo",
    "time_signature",
    "track_genre",
)

# The 114 genres of the Kaggle "Spotify Tracks Dataset", in the file's block order.
SPOTIFY_GENRES = (
    "acoustic",
    "afrobeat",
    "alt-rock",
    "alternative",
    "ambient",
    "anime",
    "black-metal",
    "bluegrass",
    "blues",
    "brazil",
    "breakbeat",
    "british",
    "cantopop",
    "chicago-house",
    "children",
    "chill",
    "classical",
    "club",
    "comedy",
    "country",
    "dance",
    "dancehall",
    "death-metal",
    "deep-house",
    "detroit-techno",
    "disco",
    "disney",
    "drum-and-bass",
    "dub",
    "dubstep",
    "edm",
    "electro",
    "electronic",
    "emo",
    "folk",
    "forro",
    "french",
    "funk",
    "garage",
    "german",
    "gospel",
    "goth",
    "grindcore",
    "groove",
    "grunge",
    "guitar",
    "happy",
    "hard-rock",
    "hardcore",
    "hardstyle",
    "heavy-metal",
    "hip-hop",
    "honky-tonk",
    "house",
    "idm",
    "indian",
    "indie-pop",
    "indie",
    "industrial",
    "iranian",
    "j-dance",
    "j-idol",
    "j-pop",
    "j-rock",
    "jazz",
    "k-pop",
    "kids",
    "latin",
    "latino",
    "malay",
    "mandopop",
    "metal",
    "metalcore",
    "minimal-techno",
    "mpb",
    "new-age",
    "opera",
    "pagode",
    "party",
    "piano",
    "pop-film",
    "pop",
    "power-pop",
    "progressive-house",
    "psych-rock",
    "punk-rock",
    "punk",
    "r-n-b",
    "reggae",
    "reggaeton",
    "rock-n-roll",
    "rock",
    "rockabilly",
    "romance",
    "sad",
    "salsa",
    "samba",
    "sertanejo",
    "show-tunes",
    "singer-songwriter",
    "ska",
    "sleep",
    "songwriter",
    "soul",
    "spanish",
    "study",
    "swedish",
    "synth-pop",
    "tango",
    "techno",
    "trance",
    "trip-hop",
    "turkish",
    "world-music",
)

MAX_BAD_ROW_RATIO = 0.05
CHUNK_ROWS = 1_000_000
UNKNOWN_TRACK_SHARE = 0.01
UNKNOWN_USER_SHARE = 0.005
WITHIN_FILE_DUPLICATE_SHARE = 0.005
CROSS_FILE_DUPLICATE_SHARE = 0.003
MULTI_GENRE_EXTRA_ROW_SHARE = 0.06
ZIPF_EXPONENT = 1.07

_BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
_NEEDS_QUOTES = r'[",\r\n]'
_FIRST_NAMES = (
    "Norma",
    "Jorge",
    "Elizabeth",
    "Susan",
    "Peter",
    "Theresa",
    "Christopher",
    "Angela",
    "Michael",
    "Laura",
    "David",
    "Sarah",
    "James",
    "Maria",
    "Robert",
    "Linda",
    "William",
    "Karen",
    "Daniel",
    "Nancy",
    "Kevin",
    "Lisa",
    "Brian",
    "Emily",
    "Jason",
    "Megan",
    "Anthony",
    "Rachel",
    "Steven",
    "Julie",
    "Amara",
    "Kwame",
    "Ama",
    "Kofi",
    "Yaw",
    "Efua",
    "Chloé",
    "José",
    "Zoë",
    "Renée",
)
_LAST_NAMES = (
    "Fisher",
    "Sullivan",
    "Woods",
    "Wagner",
    "Hansen",
    "Mitchell",
    "Lee",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Carter",
    "Roberts",
    "Mensah",
    "Owusu",
    "Boateng",
    "Asante",
    "O'Brien",
    "Núñez",
    "Müller",
    "Ødegaard",
)
_TITLE_WORDS = (
    "Love",
    "Night",
    "Dream",
    "Fire",
    "Heart",
    "Summer",
    "Rain",
    "Dance",
    "Midnight",
    "Gold",
    "Blue",
    "River",
    "Ocean",
    "Shadow",
    "Light",
    "Storm",
    "Paradise",
    "Echo",
    "Wild",
    "Home",
    "Stars",
    "Forever",
    "Lonely",
    "Sweet",
    "Broken",
    "Electric",
    "City",
    "Road",
    "Sky",
    "Moon",
    "Sun",
    "Fever",
    "Silence",
    "Thunder",
    "Velvet",
    "Neon",
    "Golden",
    "Crazy",
    "Young",
    "Free",
    "Alive",
    "Tonight",
    "Memories",
    "Waves",
    "Angel",
    "Ghost",
    "Diamond",
    "Honey",
    "Highway",
    "Runaway",
    "Kingdom",
    "Mirror",
    "Garden",
    "Rebel",
    "Soul",
    "Rhythm",
)
_NON_ASCII_WORDS = (
    "Café",
    "Corazón",
    "Niño",
    "Straße",
    "Smörgåsbord",
    "Ça va",
    "夜に駆ける",
    "사랑",
    "Ночь",
)
_TRICKY_TITLES = ('Hello, "World"', '"Heroes"', "Comma, Separated, Title", 'Say "Hi", Then Go')
_TRICKY_ARTISTS = ("Tyler, The Creator", "Earth, Wind & Fire", 'Jimmy "Bo" Horne')
_MULTILINE_ALBUM = "Live at\nthe Apollo"
_COUNTRIES = ("United States", "New Zealand", "United Kingdom", "Ireland", "Australia", "Canada")
_COUNTRY_WEIGHTS = (0.9796, 0.0043, 0.0042, 0.0041, 0.0040, 0.0038)


@dataclass(frozen=True)
class DirtyCase:
    """One deliberately bad (or tricky but valid) input file and what a correct pipeline does with it.

    ``expected`` is one of ``quarantined`` (whole file invalid), ``rejected_rows`` (the
    ``affected_rows`` bad rows rejected, the file accepted), ``nulled_user_age``
    (``affected_rows`` ages become null, rows kept), ``accepted`` (every row valid) or
    ``skipped`` (not a CSV key). ``data_rows`` counts CSV records after the header;
    ``affected_rows`` counts the rows that break a row rule (V3/V4) in the file, 0 if none.
    """

    path: str
    rule: str
    expected: str
    data_rows: int
    affected_rows: int
    detail: str


@dataclass(frozen=True)
class GeneratedDataset:
    """What ``generate_dataset`` wrote: paths, data rows per CSV (relative posix path) and dirty cases."""

    out_dir: Path
    songs_path: Path
    users_path: Path
    stream_paths: tuple[Path, ...]
    row_counts: dict[str, int]
    dirty_cases: tuple[DirtyCase, ...]
    dirty_cases_path: Path | None

    def describe(self) -> list[str]:
        """One line per written CSV (data rows), then one per dirty case with its expected outcome."""
        lines = [f"{path}: {rows:,} rows" for path, rows in self.row_counts.items()]
        for case in self.dirty_cases:
            count = f" ({case.affected_rows} rows)" if case.affected_rows else ""
            lines.append(f"{case.path}: {case.rule} -> {case.expected}{count}")
        return lines


@dataclass(frozen=True)
class _Catalog:
    """The reference model the stream events are drawn from."""

    track_ids: pa.StringArray  # known distinct track ids, then the unknown ones
    known_tracks: int
    track_cdf: np.ndarray  # cumulative Zipf weights over the known tracks
    users: int
    unknown_users: int


def generate_dataset(
    out_dir: Path,
    *,
    streams: int = 100_000,
    songs: int = 2_000,
    users: int = 5_000,
    days: int = 2,
    files: int = 3,
    seed: int = 42,
    dirty: bool = False,
    start_date: date = date(2024, 6, 25),
) -> GeneratedDataset:
    """Write the raw bucket layout under ``out_dir`` (absent or empty) and return its summary.

    ``streams`` data rows are split over ``files`` stream files, ``songs`` is the number of
    songs.csv rows (several rows may share a track_id), ``users`` the number of users.csv rows.
    With ``days >= 2`` every stream file's time window crosses a midnight.
    """
    if streams < 0 or songs < 1 or users < 1 or days < 1 or files < 1:
        raise ValueError("need streams >= 0, songs >= 1, users >= 1, days >= 1 and files >= 1")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty")
    for folder in ("songs", "users", "streams"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    songs_rng, users_rng, streams_rng, dirty_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )

    song_columns, track_ids, track_weights = _song_table(songs_rng, songs, id_start=0)
    songs_path = out_dir / "songs" / "songs.csv"
    _write_table(songs_path, SONGS_HEADER, song_columns)
    users_path = out_dir / "users" / "users.csv"
    _write_table(users_path, USERS_HEADER, _user_table(users_rng, 1, users))

    unknown = _new_track_ids(streams_rng, max(1, len(track_ids) // 10), exclude=track_ids)
    catalog = _Catalog(
        track_ids=pa.concat_arrays([track_ids, unknown]),
        known_tracks=len(track_ids),
        track_cdf=np.cumsum(track_weights) / track_weights.sum(),
        users=users,
        unknown_users=max(1, users // 50),
    )
    stream_paths = _write_streams(out_dir / "streams", streams_rng, catalog, streams, files, days, start_date)

    row_counts = {"songs/songs.csv": songs, "users/users.csv": users}
    base, extra = divmod(streams, files)
    row_counts.update({f"streams/streams{i + 1}.csv": base + (i < extra) for i in range(files)})
    cases: tuple[DirtyCase, ...] = ()
    cases_path = None
    if dirty:
        cases = _write_dirty(out_dir, dirty_rng, catalog, start_date, days, next_song_id=songs, next_user_id=users)
        row_counts.update({c.path: c.data_rows for c in cases if c.path.endswith(".csv")})
        cases_path = out_dir / "dirty_cases.json"
        cases_path.write_text(json.dumps([asdict(c) for c in cases], indent=2, ensure_ascii=False) + "\n", "utf-8")
    return GeneratedDataset(
        out_dir=out_dir,
        songs_path=songs_path,
        users_path=users_path,
        stream_paths=stream_paths,
        row_counts=row_counts,
        dirty_cases=cases,
        dirty_cases_path=cases_path,
    )


# --- CSV writing -------------------------------------------------------------------------


def _csv_field(values: pa.Array) -> pa.Array:
    """RFC 4180 field text: quoted (inner quotes doubled) only when it holds `,` `"` CR or LF."""
    values = pc.cast(values, pa.string())
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.if_else(pc.match_substring_regex(values, _NEEDS_QUOTES), quoted, values)


def _csv_lines(columns: list[pa.Array]) -> pa.Buffer:
    """The LF-terminated CSV lines of ``columns`` as one UTF-8 buffer."""
    fields = [_csv_field(c) for c in columns]
    return _text_buffer(pc.binary_join_element_wise(pc.binary_join_element_wise(*fields, ","), "\n", ""))


def _text_buffer(text: pa.Array) -> pa.Buffer:
    """The concatenated bytes of a string array without nulls."""
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset : text.offset + len(text) + 1]
    return text.buffers()[2][int(offsets[0]) : int(offsets[-1])]


def _write_table(path: Path, header: tuple[str, ...], columns: list[pa.Array]) -> None:
    """Write header and rows as RFC 4180 CSV (LF, minimal quoting)."""
    with path.open("wb") as f:
        f.write((",".join(header) + "\n").encode())
        if len(columns[0]):
            f.write(_csv_lines(columns))


def _write_lines(path: Path, lines: list[str], newline: str = "\n", prefix: bytes = b"") -> None:
    """Write pre-formatted lines (used for the small dirty files)."""
    path.write_bytes(prefix + "".join(line + newline for line in lines).encode())


# --- reference data ----------------------------------------------------------------------


def _strings(values: tuple[str, ...] | list[str]) -> pa.StringArray:
    """A string array of ``values``."""
    return pa.array(list(values), pa.string())


def _pick(rng: np.random.Generator, pool: tuple[str, ...], n: int) -> pa.Array:
    """``n`` uniform draws from ``pool``."""
    return pc.take(_strings(pool), pa.array(rng.integers(0, len(pool), n)))


def _track_id_bytes(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` Spotify-like ids: 22 base62 characters, the first in 0-7 like a 128-bit value."""
    chars = rng.integers(0, 62, size=(n, 22))
    chars[:, 0] = rng.integers(0, 8, size=n)
    return np.ascontiguousarray(_BASE62[chars]).view("S22").ravel()


def _new_track_ids(rng: np.random.Generator, n: int, exclude: pa.Array | None = None) -> pa.StringArray:
    """``n`` distinct track ids, none of them in ``exclude``, in generation order."""
    taken = np.array([] if exclude is None else exclude.to_pylist(), dtype="S22")
    ids = np.empty(0, dtype="S22")
    while len(ids) < n:
        ids = np.concatenate([ids, _track_id_bytes(rng, n - len(ids))])
        _, first = np.unique(ids, return_index=True)
        ids = ids[np.sort(first)]
        ids = ids[~np.isin(ids, taken)]
    offsets = np.arange(0, 22 * (n + 1), 22, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(ids.tobytes()))


def _titles(rng: np.random.Generator, n: int) -> pa.Array:
    """Track-like titles; a few hold commas, doubled quotes or non-ASCII words."""
    w1, w2, w3 = (_pick(rng, _TITLE_WORDS, n) for _ in range(3))
    words = rng.integers(1, 4, n)
    plain = pc.if_else(
        pa.array(words == 1),
        w1,
        pc.if_else(
            pa.array(words == 2), pc.binary_join_element_wise(w1, w2, " "), pc.binary_join_element_wise(w1, w2, w3, " ")
        ),
    )
    variants = [
        (0.04, pc.binary_join_element_wise(w1, w2, ", ")),
        (0.03, pc.binary_join_element_wise(w1, ', "', w2, '"', "")),
        (0.02, pc.binary_join_element_wise('"', w1, '" ', w2, "")),
        (0.02, pc.binary_join_element_wise(w1, _pick(rng, _NON_ASCII_WORDS, n), " ")),
        (0.03, pc.binary_join_element_wise(plain, " - Remastered 2011", "")),
    ]
    draw = rng.random(n)
    low = 0.0
    for share, text in variants:
        plain = pc.if_else(pa.array((draw >= low) & (draw < low + share)), text, plain)
        low += share
    fixed = min(n, len(_TRICKY_TITLES))
    return pa.concat_arrays([_strings(_TRICKY_TITLES[:fixed]), plain[fixed:]])


def _artists(rng: np.random.Generator, n: int) -> pa.Array:
    """Artist credits: 1-3 distinct names of a shared pool joined with ``;``."""
    size = max(3, n // 3)
    names = pc.binary_join_element_wise(_pick(rng, _FIRST_NAMES, size), _pick(rng, _LAST_NAMES, size), " ")
    names = pa.concat_arrays([_strings(_TRICKY_ARTISTS), names[len(_TRICKY_ARTISTS) :]])
    first = rng.integers(0, size, n)
    second = (first + rng.integers(1, size // 2 + 1, n)) % size
    third = (first + rng.integers(size // 2 + 1, size, n)) % size
    a1, a2, a3 = (pc.take(names, pa.array(i)) for i in (first, second, third))
    count = rng.choice(3, size=n, p=(0.75, 0.18, 0.07))
    return pc.if_else(
        pa.array(count == 0),
        a1,
        pc.if_else(
            pa.array(count == 1), pc.binary_join_element_wise(a1, a2, ";"), pc.binary_join_element_wise(a1, a2, a3, ";")
        ),
    )


def _decimals(values: np.ndarray, places: int) -> pa.Array:
    """``values`` rounded to ``places`` decimals, as shortest decimal text."""
    return pc.cast(pa.array(np.round(values, places)), pa.string())


def _song_table(
    rng: np.random.Generator, rows: int, id_start: int, exclude: pa.Array | None = None
) -> tuple[list[pa.Array], pa.StringArray, np.ndarray]:
    """Spotify-shaped song rows grouped by genre, ids ``id_start..`` in file order.

    About 6% of the rows repeat a track under one or two other genres (same metadata, other
    id); the most streamed track is always one of them and popular tracks are favoured, so
    K3's "lowest id wins" moves KPIs. Track ids avoid ``exclude``. Returns the columns in
    SONGS_HEADER order, the distinct track ids and their Zipf stream weights.
    """
    extra = int(round(rows * MULTI_GENRE_EXTRA_ROW_SHARE)) if rows >= 4 else 0
    tracks = rows - extra
    track_ids = _new_track_ids(rng, tracks, exclude)
    weights = 1.0 / rng.permutation(np.arange(1, tracks + 1)) ** ZIPF_EXPONENT
    multi = np.empty(0, np.int64)
    if extra:
        top = int(np.argmax(weights))
        bias = np.sqrt(weights)
        bias[top] = 0.0
        others = rng.choice(tracks, size=(2 * extra + 2) // 3 - 1, replace=False, p=bias / bias.sum())
        multi = np.concatenate([[top], others]).astype(np.int64)
    second_repeat = multi[: extra - len(multi)]
    row_track = np.concatenate([np.arange(tracks), multi, second_repeat])
    nth = np.concatenate([np.zeros(tracks, np.int64), np.ones(len(multi), np.int64), np.full(len(second_repeat), 2)])
    # the n-th repeat shifts the genre by n * step with step <= 37: three distinct genres
    step = rng.integers(1, 38, tracks)
    genre = (rng.integers(0, len(SPOTIFY_GENRES), tracks)[row_track] + nth * step[row_track]) % len(SPOTIFY_GENRES)
    order = np.lexsort((rng.random(rows), genre))
    row_track, genre = row_track[order], genre[order]

    popularity = np.round(100 * (weights / weights.max()) ** 0.2).astype(np.int64)
    album = _titles(rng, tracks)
    if tracks > len(_TRICKY_TITLES):
        album = pa.concat_arrays([album[:-1], _strings([_MULTILINE_ALBUM])])
    per_track = {
        "track_id": track_ids,
        "artists": _artists(rng, tracks),
        "album_name": album,
        "track_name": _titles(rng, tracks),
        "popularity": pa.array(popularity),
        "duration_ms": pa.array(rng.integers(60_000, 420_000, tracks)),
        "explicit": pc.take(_strings(["False", "True"]), pa.array((rng.random(tracks) < 0.1).astype(np.int8))),
        "danceability": _decimals(rng.beta(5, 3, tracks), 3),
        "energy": _decimals(rng.beta(4, 3, tracks), 3),
        "key": pa.array(rng.integers(0, 12, tracks)),
        "loudness": _decimals(rng.uniform(-30.0, 0.0, tracks), 3),
        "mode": pa.array(rng.integers(0, 2, tracks)),
        "speechiness": _decimals(rng.beta(1, 12, tracks), 4),
        "acousticness": _decimals(rng.beta(1, 2, tracks), 4),
        "instrumentalness": _decimals(rng.beta(0.3, 3, tracks), 6),
        "liveness": _decimals(rng.beta(2, 8, tracks), 4),
        "valence": _decimals(rng.beta(3, 3, tracks), 4),
        "tempo": _decimals(rng.uniform(60.0, 200.0, tracks), 3),
        "time_signature": pa.array(rng.choice(np.array([3, 4, 5]), size=tracks, p=(0.08, 0.88, 0.04))),
    }
    take = pa.array(row_track)
    columns = [pa.array(np.arange(id_start, id_start + rows))]
    columns += [pc.take(per_track[name], take) for name in SONGS_HEADER[1:-1]]
    columns.append(pc.take(_strings(SPOTIFY_GENRES), pa.array(genre)))
    return columns, track_ids, weights


def _user_table(rng: np.random.Generator, first_id: int, n: int) -> list[pa.Array]:
    """users.csv columns for ids ``first_id..first_id+n-1`` (ages 18-69, created in 2024)."""
    created = _strings([str(date(2024, 1, 1) + timedelta(days=d)) for d in range(365)])
    return [
        pa.array(np.arange(first_id, first_id + n)),
        pc.binary_join_element_wise(_pick(rng, _FIRST_NAMES, n), _pick(rng, _LAST_NAMES, n), " "),
        pa.array(rng.integers(18, 70, n)),
        pc.take(_strings(_COUNTRIES), pa.array(rng.choice(len(_COUNTRIES), size=n, p=_COUNTRY_WEIGHTS))),
        pc.take(created, pa.array(rng.integers(0, 365, n))),
    ]


# --- stream events -----------------------------------------------------------------------


def _file_windows(files: int, days: int) -> list[tuple[int, int]]:
    """Overlapping ``[start, end)`` second offsets per file covering ``days`` days.

    Each window is longer than half the span, so with ``days >= 2`` it exceeds a day and
    contains a midnight.
    """
    span = days * 86_400
    step = span // (2 * files)
    width = span - (files - 1) * step
    return [(i * step, i * step + width) for i in range(files)]


def _draw_events(
    rng: np.random.Generator, catalog: _Catalog, n: int, window: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` events as (user id, index into catalog.track_ids, second offset)."""
    known = np.minimum(np.searchsorted(catalog.track_cdf, rng.random(n), side="right"), catalog.known_tracks - 1)
    unknown_ids = len(catalog.track_ids) - catalog.known_tracks
    track = np.where(
        rng.random(n) < UNKNOWN_TRACK_SHARE,
        catalog.known_tracks + rng.integers(0, unknown_ids, n),
        known,
    )
    user = np.where(
        rng.random(n) < UNKNOWN_USER_SHARE,
        catalog.users + 1 + rng.integers(0, catalog.unknown_users, n),
        rng.integers(1, catalog.users + 1, n),
    )
    return user, track, rng.integers(window[0], window[1], n)


@lru_cache(maxsize=1)
def _clock_text() -> pa.Array:
    """``HH:MM:SS`` for every second of a day, indexed by the second."""
    second = np.arange(86_400)
    parts = [
        pc.utf8_lpad(pc.cast(pa.array(v), pa.string()), 2, "0")
        for v in (second // 3600, second // 60 % 60, second % 60)
    ]
    return pc.binary_join_element_wise(*parts, ":")


def _event_text(track_ids: pa.Array, user: np.ndarray, track: np.ndarray, second: np.ndarray, start: date) -> pa.Array:
    """``user_id,track_id,listen_time`` lines (without newline); ``second`` counts from ``start`` 00:00:00."""
    days = int(second.max()) // 86_400 + 1 if len(second) else 1
    day_text = _strings([f"{start + timedelta(days=d)} " for d in range(days)])
    stamp = pc.binary_join_element_wise(
        pc.take(day_text, pa.array(second // 86_400)), pc.take(_clock_text(), pa.array(second % 86_400)), ""
    )
    return pc.binary_join_element_wise(
        pc.cast(pa.array(user), pa.string()), pc.take(track_ids, pa.array(track)), stamp, ","
    )


def _write_streams(
    folder: Path,
    rng: np.random.Generator,
    catalog: _Catalog,
    total: int,
    files: int,
    days: int,
    start: date,
) -> tuple[Path, ...]:
    """Write ``streams{i}.csv`` in chunks of CHUNK_ROWS rows.

    In every chunk rows of the third quarter copy rows of the previous file (cross-file
    duplicates, from the overlap of the two windows) and rows of the last quarter copy rows
    of the first half (within-file duplicates). The first two rows of a file straddle a
    midnight inside its window.
    """
    paths = []
    previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    base, extra = divmod(total, files)
    for index, window in enumerate(_file_windows(files, days)):
        path = folder / f"streams{index + 1}.csv"
        remaining = base + (index < extra)
        pool = None
        if previous is not None:
            in_window = (previous[2] >= window[0]) & (previous[2] < window[1])
            pool = tuple(a[in_window] for a in previous)
        with path.open("wb") as f:
            f.write((",".join(STREAMS_HEADER) + "\n").encode())
            first_chunk = True
            while remaining:
                n = min(remaining, CHUNK_ROWS)
                user, track, second = _draw_events(rng, catalog, n, window)
                if first_chunk and n >= 2 and days >= 2:
                    midnight = (window[0] // 86_400 + 1) * 86_400
                    second[0] = midnight - 1 - rng.integers(0, min(3600, midnight - window[0]))
                    second[1] = midnight + rng.integers(0, min(3600, window[1] - midnight))
                if n >= 4:
                    half, three_quarters = n // 2, 3 * n // 4
                    if pool is not None and len(pool[0]):
                        k = max(1, int(n * CROSS_FILE_DUPLICATE_SHARE))
                        dst, src = rng.integers(half, three_quarters, k), rng.integers(0, len(pool[0]), k)
                        user[dst], track[dst], second[dst] = pool[0][src], pool[1][src], pool[2][src]
                    k = max(1, int(n * WITHIN_FILE_DUPLICATE_SHARE))
                    dst, src = rng.integers(three_quarters, n, k), rng.integers(0, half, k)
                    user[dst], track[dst], second[dst] = user[src], track[src], second[src]
                if first_chunk:
                    previous = (user[: n // 2].copy(), track[: n // 2].copy(), second[: n // 2].copy())
                    first_chunk = False
                lines = _event_text(catalog.track_ids, user, track, second, start)
                f.write(_text_buffer(pc.binary_join_element_wise(lines, "\n", "")))
                remaining -= n
        paths.append(path)
    return tuple(paths)


# --- dirty cases -------------------------------------------------------------------------


def _good_lines(rng: np.random.Generator, catalog: _Catalog, n: int, days: int, start: date) -> list[str]:
    """``n`` valid stream lines over known tracks and users."""
    user = rng.integers(1, catalog.users + 1, n)
    track = np.minimum(np.searchsorted(catalog.track_cdf, rng.random(n), side="right"), catalog.known_tracks - 1)
    second = rng.integers(0, days * 86_400, n)
    return _event_text(catalog.track_ids, user, track, second, start).to_pylist()


def _mix(rng: np.random.Generator, good: list[str], bad: list[str]) -> list[str]:
    """``good`` lines with ``bad`` ones inserted at random positions (order within each kept)."""
    is_bad = np.zeros(len(good) + len(bad), dtype=bool)
    is_bad[rng.choice(len(is_bad), size=len(bad), replace=False)] = True
    good_iter, bad_iter = iter(good), iter(bad)
    return [next(bad_iter) if flag else next(good_iter) for flag in is_bad]


def _bad_stream_lines(templates: list[str], start: date) -> list[str]:
    """Ten stream rows that each break exactly one V3 rule, built from ten valid lines."""
    fields = [line.split(",") for line in templates[:10]]
    day = str(start)
    return [
        ",".join(["abc", fields[0][1], fields[0][2]]),
        ",".join(["1234567890123456789", fields[1][1], fields[1][2]]),
        ",".join(["-7", fields[2][1], fields[2][2]]),
        ",".join([fields[3][0], "", fields[3][2]]),
        ",".join([fields[4][0], "   ", fields[4][2]]),
        ",".join([fields[5][0], fields[5][1], f"{start.year}-02-30 10:00:00"]),
        ",".join([fields[6][0], fields[6][1], f"{day}T10:00:00"]),
        ",".join([fields[7][0], fields[7][1], f"{day} 24:00:00"]),
        ",".join(fields[8][:2]),
        ",".join([*fields[9], "extra"]),
    ]


def _write_dirty(
    out_dir: Path,
    rng: np.random.Generator,
    catalog: _Catalog,
    start: date,
    days: int,
    next_song_id: int,
    next_user_id: int,
) -> tuple[DirtyCase, ...]:
    """Write one file per bad-input rule (plus valid edge cases) and describe each."""
    streams = out_dir / "streams"
    cases: list[DirtyCase] = []

    def add(path: Path, rule: str, expected: str, data_rows: int, affected: int, detail: str) -> None:
        cases.append(DirtyCase(path.relative_to(out_dir).as_posix(), rule, expected, data_rows, affected, detail))

    good = _good_lines(rng, catalog, 20, days, start)
    path = streams / "dirty_missing_column.csv"
    _write_lines(path, ["user_id,listen_time", *(f"{u},{t}" for u, _, t in (g.split(",") for g in good))])
    add(path, "V2 missing column", "quarantined", 20, 0, "header lacks track_id")

    good = _good_lines(rng, catalog, 20, days, start)
    path = streams / "dirty_repeated_column.csv"
    _write_lines(path, ["user_id,track_id,listen_time,track_id", *(f"{g},{g.split(',')[1]}" for g in good)])
    add(path, "V2 repeated column", "quarantined", 20, 0, "track_id appears twice in the header")

    path = streams / "dirty_empty.csv"
    path.write_bytes(b"")
    add(path, "V2 empty file", "quarantined", 0, 0, "0 bytes")

    good = _good_lines(rng, catalog, 20, days, start)
    path = streams / "dirty_not_utf8.csv"
    user, _, when = good[7].split(",")
    body = "\n".join(["user_id,track_id,listen_time", *good[:7]]).encode() + b"\n"
    body += f"{user},Caf".encode() + b"\xe9" + f"Del Mar,{when}\n".encode()
    body += "".join(g + "\n" for g in good[8:]).encode()
    path.write_bytes(body)
    add(path, "V2 not decodable", "quarantined", 20, 0, "latin-1 byte 0xE9 in a track_id (invalid UTF-8)")

    path = streams / "dirty_header_only.csv"
    _write_lines(path, [",".join(STREAMS_HEADER)])
    add(path, "V2 header only", "accepted", 0, 0, "valid file with no data rows")

    good = _good_lines(rng, catalog, 30, days, start)
    path = streams / "dirty_bom_crlf_blanks.csv"
    blanked = [" " + " , ".join(g.split(",")) + " " for g in good]
    _write_lines(path, [" user_id , track_id ,listen_time ", *blanked], newline="\r\n", prefix=b"\xef\xbb\xbf")
    add(
        path,
        "V1/V2/V3 BOM, CRLF and blanks",
        "accepted",
        30,
        0,
        "UTF-8 BOM, CRLF line endings, blanks around header names and values: all rows valid after stripping",
    )

    good = _good_lines(rng, catalog, 30, days, start)
    path = streams / "dirty_reordered_extra_column.csv"
    reordered = [f"{t},web,{u},{k}" for u, k, t in (g.split(",") for g in good)]
    _write_lines(path, ["listen_time,device,user_id,track_id", *reordered])
    add(
        path,
        "V2 column order and extra column",
        "accepted",
        30,
        0,
        "columns reordered and an unknown column 'device': all rows valid",
    )

    lines = _good_lines(rng, catalog, 250, days, start)
    bad = _bad_stream_lines(lines[240:], start)
    good = [*lines[:239], f"999999999999999999,{lines[0].split(',')[1]},{start} 23:59:59"]
    path = streams / "dirty_bad_rows.csv"
    _write_lines(path, ["user_id,track_id,listen_time", *_mix(rng, good, bad)])
    add(
        path,
        "V3 invalid rows under threshold",
        "rejected_rows",
        250,
        len(bad),
        "user_id abc / 19 digits / -7, empty and blank track_id, listen_time 02-30, T separator and 24:00:00, "
        "2 and 4 fields; 10 of 250 rows (4%); an 18-digit user_id row is valid",
    )

    good = _good_lines(rng, catalog, 105, days, start)
    path = streams / "dirty_at_threshold.csv"
    bad = _bad_stream_lines(good[95:], start)[:5]
    _write_lines(path, ["user_id,track_id,listen_time", *_mix(rng, good[:95], bad)])
    add(
        path,
        "V5 exactly at threshold",
        "rejected_rows",
        100,
        5,
        "5 of 100 rows invalid (5% does not exceed MAX_REJECTED_ROW_RATIO 0.05)",
    )

    good = _good_lines(rng, catalog, 104, days, start)
    path = streams / "dirty_over_threshold.csv"
    bad = _bad_stream_lines(good[94:], start)[:6]
    _write_lines(path, ["user_id,track_id,listen_time", *_mix(rng, good[:94], bad)])
    add(path, "V5 over threshold", "quarantined", 100, 6, "6 of 100 rows invalid (6% > 5%)")

    path = streams / "README.txt"
    path.write_text("Sample streams bucket. Not a CSV: a pipeline skips and lists this key.\n", "utf-8")
    add(path, "non-CSV key", "skipped", 0, 0, "not a .csv/.csv.gz key")

    cases.append(_write_songs_extra(out_dir, rng, next_song_id, catalog.track_ids))
    cases.extend(_write_users_extra(out_dir, rng, next_user_id + catalog.unknown_users + 1000))
    return tuple(cases)


def _write_songs_extra(out_dir: Path, rng: np.random.Generator, first_id: int, exclude: pa.Array) -> DirtyCase:
    """``songs/songs_extra.csv``: new tracks, 5 of 120 rows invalid, one track whose later row has the lower id."""
    rows = 120
    columns, _, _ = _song_table(rng, rows, id_start=first_id, exclude=exclude)
    table = [[str(v) for v in c.to_pylist()] for c in columns]
    track_col, genre_col, duration_col, id_col = (
        SONGS_HEADER.index(name) for name in ("track_id", "track_genre", "duration_ms", "id")
    )
    # rows 10 and 11 list one track under two genres; row 11 carries the lower id (K3)
    for name_index in range(1, len(SONGS_HEADER) - 1):
        if name_index != id_col:
            table[name_index][11] = table[name_index][10]
    table[genre_col][11] = SPOTIFY_GENRES[(SPOTIFY_GENRES.index(table[genre_col][10]) + 1) % len(SPOTIFY_GENRES)]
    table[id_col][10], table[id_col][11] = table[id_col][11], table[id_col][10]
    table[genre_col][20] = ""
    table[duration_col][30] = "215000.5"
    table[duration_col][40] = "3:35"
    table[id_col][50] = "x17"
    table[track_col][60] = ""
    path = out_dir / "songs" / "songs_extra.csv"
    _write_table(path, SONGS_HEADER, [pa.array(c, pa.string()) for c in table])
    return DirtyCase(
        path.relative_to(out_dir).as_posix(),
        "V4 invalid song rows",
        "rejected_rows",
        rows,
        5,
        "empty track_genre, duration_ms 215000.5 and 3:35, id x17, empty track_id (5 of 120 rows); "
        "track ids absent from songs.csv; one track on two rows where the later row has the lower id",
    )


def _write_users_extra(out_dir: Path, rng: np.random.Generator, first_id: int) -> list[DirtyCase]:
    """``users/users_extra.csv``: new user ids, 3 non-integer ages and 1 bad user_id in 50 rows."""
    rows = 50
    table = [c.to_pylist() for c in _user_table(rng, first_id, rows)]
    for position, age in ((5, "abc"), (15, "42.5"), (25, "forty")):
        table[2][position] = age
    table[0][35] = f"u{table[0][35]}"
    path = out_dir / "users" / "users_extra.csv"
    _write_table(path, USERS_HEADER, [pa.array([str(v) for v in c]) for c in table])
    relative = path.relative_to(out_dir).as_posix()
    return [
        DirtyCase(
            relative,
            "V4 non-integer user_age",
            "nulled_user_age",
            rows,
            3,
            "user_age abc, 42.5 and forty become null; the rows are kept",
        ),
        DirtyCase(
            relative, "V4 invalid user_id", "rejected_rows", rows, 1, "user_id with a letter prefix (1 of 50 rows)"
        ),
    ]
